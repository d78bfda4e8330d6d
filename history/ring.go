package history

// ring holds the newest cap(items) values, oldest first from start.
type ring[T any] struct {
	items []T
	start int
}

func newRing[T any](n int) *ring[T] { return &ring[T]{items: make([]T, 0, n)} }

// push adds v, replacing the oldest value when the ring is full.
func (r *ring[T]) push(v T) {
	if len(r.items) < cap(r.items) {
		r.items = append(r.items, v)
		return
	}
	r.items[r.start] = v
	r.start = (r.start + 1) % len(r.items)
}

func (r *ring[T]) len() int { return len(r.items) }

// at returns the i-th oldest value.
func (r *ring[T]) at(i int) T { return r.items[(r.start+i)%len(r.items)] }

// last returns the newest value; ok is false when the ring is empty.
func (r *ring[T]) last() (v T, ok bool) {
	if len(r.items) == 0 {
		return v, false
	}
	return r.at(len(r.items) - 1), true
}

// all returns the values, oldest first, in a new slice.
func (r *ring[T]) all() []T {
	out := make([]T, len(r.items))
	for i := range out {
		out[i] = r.at(i)
	}
	return out
}
