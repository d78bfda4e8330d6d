package streams

import "errors"

// Sentinel errors returned by the store. Compare with errors.Is.
var (
	// ErrStreamNotFound: the named stream does not exist (and auto-create is off).
	ErrStreamNotFound = errors.New("stream not found")
	// ErrStreamExists: a stream with that name already exists.
	ErrStreamExists = errors.New("stream already exists")
	// ErrInvalidName: the stream name is not allowed.
	ErrInvalidName = errors.New("invalid stream name")
	// ErrRecordTooLarge: an encoded record exceeds Options.MaxRecordBytes.
	ErrRecordTooLarge = errors.New("record too large")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store closed")
	// ErrCorrupt: stored data could not be decoded.
	ErrCorrupt = errors.New("corrupt record")
	// ErrOffsetMismatch: records copied from a peer (Install) do not
	// follow the stream's records.
	ErrOffsetMismatch = errors.New("offset mismatch")
	// ErrWrite: the store could not write or sync; the records were not stored.
	ErrWrite = errors.New("store write failed")
)
