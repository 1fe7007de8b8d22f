//go:build !unix

package main

import "os"

// maxRSS reports no peak resident set: the platform has no getrusage.
func maxRSS(*os.ProcessState) (int64, bool) { return 0, false }
