package dbserver

import "syscall"

// sysProcAttr runs a server process as cred (nil: as this process), and
// kills it when this process dies, so a crashed test leaves no server.
func sysProcAttr(cred *account) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if cred != nil {
		a.Credential = &syscall.Credential{Uid: uint32(cred.uid), Gid: uint32(cred.gid)}
	}
	return a
}
