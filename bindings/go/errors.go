package revledger

import "strconv"

// Status is the status code of a failed call: the values of the C enum
// revledger_status, plus StatusClosed for a Ledger used after Close.
type Status uint32

// The statuses of the C ABI (same values), and StatusClosed.
const (
	StatusOK              Status = 0
	StatusInvalidArgument Status = 1 // bad argument: key over its limit, bad scope, smaller lifetime, ...
	StatusIO              Status = 2 // the operating system refused an operation
	StatusCorrupt         Status = 3 // the file is damaged; the message names the byte offset
	StatusLocked          Status = 4 // another writer holds the ledger
	StatusReadOnly        Status = 5 // a write on a reader handle
	StatusIncompatible    Status = 6 // not a revledger file, or an unknown format version
	StatusInternal        Status = 7 // a bug in revledger; the message says what
	// StatusClosed exists only in the Go binding: the Ledger was closed.
	StatusClosed Status = 1 << 16
)

var statusNames = [...]string{
	"OK", "INVALID_ARGUMENT", "IO", "CORRUPT", "LOCKED", "READ_ONLY", "INCOMPATIBLE", "INTERNAL",
}

// String is the C name without its REVLEDGER_ prefix, e.g. "INVALID_ARGUMENT".
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	if s == StatusClosed {
		return "CLOSED"
	}
	return "Status(" + strconv.FormatUint(uint64(s), 10) + ")"
}

// Error is a failed call: its status and the library's message
// (revledger_last_error, read on the thread that made the call).
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	if e.Message != "" {
		return "revledger: " + e.Message
	}
	switch e.Status {
	case StatusClosed:
		return "revledger: ledger is closed"
	default:
		return "revledger: " + e.Status.String()
	}
}

// Is makes errors.Is(err, ErrLocked) (and the other sentinels) true for any *Error of
// that status. A target with a message matches only an error with the same message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || t == nil {
		return false
	}
	return t.Status == e.Status && (t.Message == "" || t.Message == e.Message)
}

// Sentinels for errors.Is, one per status.
var (
	ErrInvalidArgument error = &Error{Status: StatusInvalidArgument}
	ErrIO              error = &Error{Status: StatusIO}
	ErrCorrupt         error = &Error{Status: StatusCorrupt}
	ErrLocked          error = &Error{Status: StatusLocked}
	ErrReadOnly        error = &Error{Status: StatusReadOnly}
	ErrIncompatible    error = &Error{Status: StatusIncompatible}
	ErrInternal        error = &Error{Status: StatusInternal}
	// ErrClosed is returned by every call on a Ledger after Close.
	ErrClosed error = &Error{Status: StatusClosed}
)
