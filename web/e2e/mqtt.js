// A minimal MQTT 3.1.1 client over TCP for the tests: CONNECT, SUBSCRIBE
// and PUBLISH at QoS 1, with acknowledgements sent when the test says so
// (a paused group member is one that does not acknowledge).

import net from 'node:net';

function str(s) {
  const b = Buffer.from(s, 'utf8');
  const out = Buffer.alloc(2 + b.length);
  out.writeUInt16BE(b.length, 0);
  b.copy(out, 2);
  return out;
}

function packet(type, flags, body) {
  const len = [];
  let n = body.length;
  do {
    let d = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) d |= 128;
    len.push(d);
  } while (n > 0);
  return Buffer.concat([Buffer.from([(type << 4) | flags, ...len]), body]);
}

export class Client {
  // connect opens a clean session with the given client id.
  static connect(port, id) {
    return new Promise((resolve, reject) => {
      const c = new Client();
      c.sock = net.connect(port, '127.0.0.1');
      c.buf = Buffer.alloc(0);
      c.waiters = new Map();
      c.messages = [];
      c.onConnack = resolve.bind(null, c);
      c.sock.on('error', reject);
      c.sock.on('data', (d) => c.onData(d));
      c.sock.on('connect', () => {
        const vh = Buffer.concat([str('MQTT'), Buffer.from([4, 2, 0, 60])]);
        c.sock.write(packet(1, 0, Buffer.concat([vh, str(id)])));
      });
      c.nextId = 1;
    });
  }

  onData(d) {
    this.buf = Buffer.concat([this.buf, d]);
    for (;;) {
      if (this.buf.length < 2) return;
      let mult = 1, len = 0, i = 1, b;
      do {
        if (i >= this.buf.length) return;
        b = this.buf[i++];
        len += (b & 127) * mult;
        mult *= 128;
      } while (b & 128);
      if (this.buf.length < i + len) return;
      const type = this.buf[0] >> 4, flags = this.buf[0] & 15;
      const body = this.buf.subarray(i, i + len);
      this.buf = this.buf.subarray(i + len);
      if (type === 2) this.onConnack();
      else if (type === 4 || type === 9) {
        const w = this.waiters.get(body.readUInt16BE(0));
        if (w) w();
      } else if (type === 3) {
        const tl = body.readUInt16BE(0);
        const topic = body.subarray(2, 2 + tl).toString();
        const qos = (flags >> 1) & 3;
        const pid = qos > 0 ? body.readUInt16BE(2 + tl) : 0;
        const payload = body.subarray(2 + tl + (qos > 0 ? 2 : 0)).toString();
        this.messages.push({ topic, payload, pid, qos });
      }
    }
  }

  wait(pid) {
    return new Promise((r) => this.waiters.set(pid, r));
  }

  async subscribe(filter) {
    const pid = this.nextId++;
    const done = this.wait(pid);
    const b = Buffer.alloc(2);
    b.writeUInt16BE(pid, 0);
    this.sock.write(packet(8, 2, Buffer.concat([b, str(filter), Buffer.from([1])])));
    await done;
  }

  async publish(topic, payload) {
    const pid = this.nextId++;
    const done = this.wait(pid);
    const b = Buffer.alloc(2);
    b.writeUInt16BE(pid, 0);
    this.sock.write(packet(3, 2, Buffer.concat([str(topic), b, Buffer.from(payload)])));
    await done;
  }

  // ack acknowledges the oldest n messages received and not yet acknowledged.
  ack(n) {
    const todo = this.messages.filter((m) => m.qos > 0 && !m.acked).slice(0, n);
    for (const m of todo) {
      const b = Buffer.alloc(2);
      b.writeUInt16BE(m.pid, 0);
      this.sock.write(packet(4, 0, b));
      m.acked = true;
    }
    return todo.length;
  }

  close() {
    this.sock.write(Buffer.from([0xe0, 0]));
    this.sock.end();
  }
}
