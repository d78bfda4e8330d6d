// Package wire holds the MQTT wire-format primitives the packet encoders
// share: variable byte integers and length-prefixed strings.
package wire

import "encoding/binary"

// AppendVarint appends n as an MQTT variable byte integer (1 to 4 bytes for
// n < 268,435,456).
func AppendVarint(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

// VarintLen is the encoded length of n as a variable byte integer.
func VarintLen(n int) int {
	l := 1
	for n >= 128 {
		n /= 128
		l++
	}
	return l
}

// AppendString appends s with its two-byte big-endian length.
func AppendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}
