package raftlog

import "encoding/binary"

// Kind bytes follow a group's prefix (see the package doc).
const (
	kindLog    byte = 0x01
	kindStable byte = 0x02
	// kindEnd is above every kind: prefix+kindEnd bounds the group's keys.
	kindEnd byte = 0xff
)

// groupPrefix returns uvarint(len(id)) followed by id.
func groupPrefix(id string) []byte {
	p := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(id)+1+8), uint64(len(id)))
	return append(p, id...)
}

// withKind returns prefix followed by kind, in a new slice with room for
// an index.
func withKind(prefix []byte, kind byte) []byte {
	k := make([]byte, 0, len(prefix)+1+8)
	k = append(k, prefix...)
	return append(k, kind)
}

// appendIndex appends index big-endian, so keys sort in index order.
func appendIndex(dst []byte, index uint64) []byte {
	return binary.BigEndian.AppendUint64(dst, index)
}
