package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// GCTarget is runtime.gc_percent: "auto" or a fixed collector target in
// percent (GOGC), -1 turning the collector off. Configuration may write
// it as a number or a string.
type GCTarget string

// GCAuto lets the serving process pick the collector target from its
// allocation rate (package internal/gctune): low while it allocates
// slowly (idle connections), high under load.
const GCAuto GCTarget = "auto"

// Parse returns the fixed percentage, or auto true for "auto".
func (g GCTarget) Parse() (percent int, auto bool, err error) {
	s := strings.TrimSpace(string(g))
	if strings.EqualFold(s, string(GCAuto)) {
		return 0, true, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < -1 || n == 0 {
		return 0, false, fmt.Errorf("%q: want auto, a positive percentage, or -1 to turn the collector off", s)
	}
	return n, false, nil
}

// gcTargetHook decodes numbers (YAML's gc_percent: 400) and strings into
// GCTarget; Validate checks the value.
func gcTargetHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(GCTarget("")) {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		return GCTarget(v), nil
	case int, int64, uint64, float64:
		return GCTarget(fmt.Sprint(v)), nil
	}
	return data, nil
}

// MarshalYAML writes a fixed target as a number, "auto" as a string.
func (g GCTarget) MarshalYAML() (any, error) {
	if n, auto, err := g.Parse(); err == nil && !auto {
		return n, nil
	}
	return string(g), nil
}
