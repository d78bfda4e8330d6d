package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// ByteSize is a size in bytes that configuration may write as a number or
// with a unit: 512, "64KiB", "1MiB", "2GB".
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"TB", 1000 * 1000 * 1000 * 1000},
	{"B", 1},
}

// ParseByteSize parses a byte size.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid byte size %q (want a number with an optional unit: B, KiB, MiB, GiB, KB, MB, GB)", s)
	}
	return ByteSize(n * mult), nil
}

// String formats the size with the largest exact binary unit.
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return fmt.Sprintf("%d%s", int64(b)/u.mult, u.suffix)
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalYAML writes the size in its readable form.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// byteSizeHook decodes strings and numbers into ByteSize.
func byteSizeHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(ByteSize(0)) {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		return ParseByteSize(v)
	case ByteSize:
		return v, nil
	}
	return data, nil
}
