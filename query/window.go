package query

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Window is the window of a continuous query: windows are [start, start +
// Size), their starts Slide apart (Size apart for tumbling windows, Slide
// 0) and aligned to the Unix epoch plus Offset. A hopping window (0 <
// Slide < Size) is built from panes of gcd(Size, Slide): each record is
// in one pane, each window is the union of Size/pane consecutive panes.
type Window struct {
	Size   time.Duration
	Slide  time.Duration // 0: tumbling
	Offset time.Duration
	// Gap, for session windows (Size 0), ends a key's session when no
	// record of the key comes for that long; MaxSession, if not 0, bounds
	// a session's length.
	Gap, MaxSession time.Duration
}

// Sessions reports whether the windows are sessions.
func (w Window) Sessions() bool { return w.Gap > 0 }

// CellEnd returns where a session holding instant t (unix ns) is cut at
// the latest: the next multiple of MaxSession after t on the epoch's grid
// (as Azure Stream Analytics checks a session's length at multiples of
// its maximum). A session never spans such an instant, so it is at most
// MaxSession long, and where it is cut depends on its records only, never
// on where reading them started. Without MaxSession, never (MaxInt64).
func (w Window) CellEnd(t int64) int64 {
	if w.MaxSession <= 0 {
		return math.MaxInt64
	}
	return w.align(t, w.MaxSession) + int64(w.MaxSession)
}

// Hopping reports whether windows overlap.
func (w Window) Hopping() bool { return w.Slide > 0 && w.Slide < w.Size }

// Hop is the distance between window starts.
func (w Window) Hop() time.Duration {
	if w.Hopping() {
		return w.Slide
	}
	return w.Size
}

// Pane is the length of the panes windows are built from: gcd(Size, Hop).
func (w Window) Pane() time.Duration {
	a, b := w.Size, w.Hop()
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// align returns the greatest instant at or before t on the grid of step,
// in unix nanoseconds.
func (w Window) align(t int64, step time.Duration) int64 {
	ns, s := t-int64(w.Offset), int64(step)
	m := ns % s
	if m < 0 {
		m += s
	}
	return ns - m + int64(w.Offset)
}

// Start returns the start of the last window holding t (for tumbling
// windows, the only one).
func (w Window) Start(t time.Time) time.Time {
	return time.Unix(0, w.align(t.UnixNano(), w.Hop())).UTC()
}

// BlockStart returns the start of the block of Size holding instant t
// (unix ns): the tumbling window of the same size. A window spans at most
// two blocks.
func (w Window) BlockStart(t int64) int64 { return w.align(t, w.Size) }

// PaneStart returns the start of the pane holding t (unix ns).
func (w Window) PaneStart(t int64) int64 { return w.align(t, w.Pane()) }

// LastStart returns the start of the last window holding instant t (unix
// ns).
func (w Window) LastStart(t int64) int64 { return w.align(t, w.Hop()) }

// FirstStart returns the start of the first window holding instant t
// (unix ns).
func (w Window) FirstStart(t int64) int64 { return w.align(t-int64(w.Size), w.Hop()) + int64(w.Hop()) }

// FirstOpen returns the start of the first window that ends after wm:
// once every window ending at or before wm has been output, input is
// needed again from there.
func (w Window) FirstOpen(wm time.Time) time.Time {
	return time.Unix(0, w.FirstStart(wm.UnixNano())).UTC()
}

// windowOf reads a window call: TUMBLING(size), TUMBLE(ts, size
// [, offset]), TUMBLINGWINDOW(unit, n), HOPPING(size, slide), HOP(ts,
// size, slide), HOPPINGWINDOW(unit, size, slide), SESSION([ts,] gap[,
// max]) or SESSIONWINDOW(unit, max, gap). ts is the time expression when
// it is not _timestamp (event time), else nil.
func windowOf(w *call) (win Window, ts expr, err error) {
	switch w.name {
	case "tumble", "hop":
		if len(w.args) > 0 {
			ts = timeArg(w.args[0])
		}
	case "session":
		if len(w.args) > 1 && literalValue(w.args[0]) == nil {
			ts = timeArg(w.args[0])
		}
	}
	win, err = windowSpec(w)
	return win, ts, err
}

// timeArg returns the time expression e of a window call, nil for
// _timestamp (the append time).
func timeArg(e expr) expr {
	if c, ok := e.(*columnRef); ok && strings.EqualFold(c.name, "_timestamp") {
		return nil
	}
	return e
}

func windowSpec(w *call) (Window, error) {
	var sizeArg, slideArg, offsetArg expr
	switch w.name {
	case "tumbling":
		if len(w.args) != 1 {
			return Window{}, errorf(w.pos, "TUMBLING takes the window size: TUMBLING(INTERVAL 10 SECOND)")
		}
		sizeArg = w.args[0]
	case "tumble":
		if len(w.args) < 2 || len(w.args) > 3 {
			return Window{}, errorf(w.pos, "TUMBLE takes the time column, the size and an optional offset: TUMBLE(_timestamp, INTERVAL 10 SECOND)")
		}
		sizeArg = w.args[1]
		if len(w.args) == 3 {
			offsetArg = w.args[2]
		}
	case "hopping":
		if len(w.args) != 2 {
			return Window{}, errorf(w.pos, "HOPPING takes the window size and the slide: HOPPING(INTERVAL 10 SECOND, INTERVAL 5 SECOND)")
		}
		sizeArg, slideArg = w.args[0], w.args[1]
	case "hop":
		if len(w.args) != 3 {
			return Window{}, errorf(w.pos, "HOP takes the time column, the window size and the slide: HOP(_timestamp, INTERVAL 10 SECOND, INTERVAL 5 SECOND)")
		}
		sizeArg, slideArg = w.args[1], w.args[2]
	case "tumblingwindow", "hoppingwindow", "sessionwindow":
		return ekuiperWindow(w)
	case "session":
		return sessionOf(w)
	default:
		return Window{}, errorf(w.pos, "%s windows are not supported: tumbling, hopping and session windows are (TUMBLING, TUMBLE, TUMBLINGWINDOW, HOPPING, HOP, HOPPINGWINDOW, SESSION, SESSIONWINDOW)", strings.ToUpper(w.name))
	}
	var out Window
	var err error
	if out.Size, err = durationArg(sizeArg); err != nil {
		return Window{}, err
	}
	if slideArg != nil {
		if out.Slide, err = durationArg(slideArg); err != nil {
			return Window{}, err
		}
		if err := checkSlide(out, slideArg.position()); err != nil {
			return Window{}, err
		}
	}
	if offsetArg != nil {
		if out.Offset, err = durationArg(offsetArg); err != nil {
			return Window{}, err
		}
		if out.Offset >= out.Size {
			return Window{}, errorf(offsetArg.position(), "the window offset must be smaller than its size")
		}
	}
	return normalize(out), nil
}

// sessionOf reads SESSION([ts,] gap [, max]).
func sessionOf(w *call) (Window, error) {
	args := w.args
	if len(args) > 1 && literalValue(args[0]) == nil {
		args = args[1:] // the time expression (windowOf)
	}
	if len(args) < 1 || len(args) > 2 {
		return Window{}, errorf(w.pos, "SESSION takes the time, the gap that ends a session and an optional maximum length: SESSION(_timestamp, INTERVAL 30 SECOND[, INTERVAL 1 HOUR])")
	}
	var out Window
	var err error
	if out.Gap, err = durationArg(args[0]); err != nil {
		return Window{}, err
	}
	if len(args) == 2 {
		if out.MaxSession, err = durationArg(args[1]); err != nil {
			return Window{}, err
		}
		if out.MaxSession < out.Gap {
			return Window{}, errorf(args[1].position(), "a session's maximum length (%s) is shorter than its gap (%s)", out.MaxSession, out.Gap)
		}
	}
	return out, nil
}

// checkSlide refuses a slide longer than the window (gaps between
// windows) and windows made of too many panes.
func checkSlide(w Window, at Pos) error {
	if w.Slide > w.Size {
		return errorf(at, "the slide (%s) is longer than the window (%s): records between windows would be in none; HOP and HOPPING take the size first, then the slide", w.Slide, w.Size)
	}
	if n := w.Size / w.Pane(); n > maxPanes {
		return errorf(at, "a window of %s sliding by %s is made of %d panes of %s (gcd of the two): at most %d; choose a slide that divides the size",
			w.Size, w.Slide, n, w.Pane(), maxPanes)
	}
	return nil
}

// maxPanes bounds the panes of a hopping window: state is kept per key
// and pane.
const maxPanes = 10000

// normalize makes a hopping window whose slide is its size tumbling.
func normalize(w Window) Window {
	if w.Slide == w.Size {
		w.Slide = 0
	}
	return w
}

// ekuiperWindow reads eKuiper's TUMBLINGWINDOW(unit, size) and
// HOPPINGWINDOW(unit, size, slide).
func ekuiperWindow(w *call) (Window, error) {
	usage := "TUMBLINGWINDOW takes a unit (ms, ss, mi, hh, dd) and a whole number: TUMBLINGWINDOW(ss, 10)"
	want := 2
	switch w.name {
	case "hoppingwindow":
		usage = "HOPPINGWINDOW takes a unit (ms, ss, mi, hh, dd), the window size and the slide: HOPPINGWINDOW(ss, 10, 5)"
		want = 3
	case "sessionwindow":
		usage = "SESSIONWINDOW takes a unit (ms, ss, mi, hh, dd), the maximum length of a session and the gap that ends it: SESSIONWINDOW(mi, 60, 5)"
		want = 3
	}
	if len(w.args) != want {
		return Window{}, errorf(w.pos, "%s", usage)
	}
	unit, ok := w.args[0].(*columnRef)
	if !ok || ekuiperUnits[strings.ToLower(unit.name)] == "" {
		return Window{}, errorf(w.args[0].position(), "%s", usage)
	}
	var ds []time.Duration
	for _, a := range w.args[1:] {
		n, isNum := literalValue(a).(int64)
		if !isNum {
			return Window{}, errorf(a.position(), "%s", usage)
		}
		d, err := durationOf(strconv.FormatInt(n, 10)+" "+ekuiperUnits[strings.ToLower(unit.name)], a.position())
		if err != nil {
			return Window{}, err
		}
		ds = append(ds, d)
	}
	if w.name == "sessionwindow" {
		if ds[0] < ds[1] {
			return Window{}, errorf(w.args[1].position(), "a session's maximum length (%s) is shorter than its gap (%s)", ds[0], ds[1])
		}
		return Window{Gap: ds[1], MaxSession: ds[0]}, nil
	}
	out := Window{Size: ds[0]}
	if len(ds) == 2 {
		out.Slide = ds[1]
		if err := checkSlide(out, w.args[2].position()); err != nil {
			return Window{}, err
		}
	}
	return normalize(out), nil
}

var ekuiperUnits = map[string]string{"ms": "millisecond", "ss": "second", "mi": "minute", "hh": "hour", "dd": "day"}

func literalValue(e expr) any {
	if l, ok := e.(*literal); ok {
		return l.val
	}
	return nil
}

// durationArg reads a window size: INTERVAL n UNIT (which peel turned into
// the literal 'n unit') or a Go duration in quotes ('10s').
func durationArg(e expr) (time.Duration, error) {
	s, ok := literalValue(e).(string)
	if !ok {
		return 0, errorf(e.position(), "a window size is written INTERVAL <whole number> <unit>, e.g. INTERVAL 10 SECOND")
	}
	return durationOf(s, e.position())
}

var windowUnits = map[string]time.Duration{
	"millisecond": time.Millisecond, "second": time.Second, "minute": time.Minute,
	"hour": time.Hour, "day": 24 * time.Hour, "week": 7 * 24 * time.Hour,
}

func durationOf(s string, pos Pos) (time.Duration, error) {
	var d time.Duration
	if n, unit, ok := strings.Cut(s, " "); ok {
		u, known := windowUnits[strings.TrimSuffix(strings.ToLower(unit), "s")]
		v, err := strconv.ParseInt(n, 10, 64)
		if !known || err != nil || v <= 0 || v > int64(1<<62)/int64(u) {
			return 0, errorf(pos, "bad window size %q: a positive whole number of millisecond, second, minute, hour, day or week", s)
		}
		d = time.Duration(v) * u
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d <= 0 {
			return 0, errorf(pos, "bad window size %q: write INTERVAL 10 SECOND (or '10s')", s)
		}
	}
	if d < time.Millisecond {
		return 0, errorf(pos, "a window is at least 1 millisecond long")
	}
	return d, nil
}
