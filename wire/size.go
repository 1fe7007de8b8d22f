package wire

// Size estimates the bytes r takes in a pull page or a staged session: its
// id, stamp and values, with a small overhead per value. The server's
// limits on pages and sessions count bytes this way.
func (r Row) Size() int {
	n := 64 + len(r.ID) + len(r.HLC) + len(r.Device) + len(r.ModifiedBy)
	for k, v := range r.Values {
		n += 8 + len(k)
		switch x := v.(type) {
		case string:
			n += len(x)
		case []byte:
			n += (len(x) + 2) / 3 * 4 // base64
		default:
			n += 8
		}
	}
	return n
}
