package wire

// The formats of the values a request carries, in the words error
// messages use to say what they want ("want " + the format): a client in
// another language learns them from the first refusal.
const (
	// StampFormat is the format of a clock stamp (see ParseStamp).
	StampFormat = "13 digits of Unix milliseconds, a dot, 6 digits of counter, a dot and the device id, such as 1700000000000.000001.device-1"
	// IDFormat is the format of a device id, a push session id and a
	// write request id.
	IDFormat = "1 to 64 ASCII letters, digits and dashes, such as 0190a3b4-0000-7000-8000-000000000001"
	// SessionIDFormat is the format of a push session id: IDFormat.
	SessionIDFormat = IDFormat
	// CursorFormat is the format of a pull or snapshot cursor: opaque.
	CursorFormat = `the cursor of an earlier answer as it was sent, or "" (the start)`
)
