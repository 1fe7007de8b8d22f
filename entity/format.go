package entity

// WireFormat describes how a value of kind k is written in JSON on the
// wire, with an example: error messages about a value say it. null is
// the value of a nullable column of any kind.
func (k Kind) WireFormat() string {
	switch k {
	case KindText:
		return `a JSON string, such as "hello"`
	case KindInteger:
		return "a JSON number without fraction or exponent, in 64 bits, such as 42"
	case KindReal:
		return "a JSON number, such as 1.5"
	case KindBool:
		return "true or false"
	case KindTime:
		return `a string in RFC 3339 with a zone, such as "2024-05-01T12:00:00.000000000Z" (answers carry UTC with 9 fraction digits)`
	case KindBlob:
		return `a string of standard base64 with padding, such as "aGVsbG8="`
	case KindJSON:
		return `a string holding JSON text, such as "{\"a\":1}"`
	}
	return "a known kind"
}
