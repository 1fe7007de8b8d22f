//go:build !unix

package dbserver

import "syscall"

// sysProcAttr runs a server process as this process's user: credential
// returns nil here (os.Geteuid is -1 off Unix), and there is no parent
// death signal.
func sysProcAttr(*account) *syscall.SysProcAttr { return nil }
