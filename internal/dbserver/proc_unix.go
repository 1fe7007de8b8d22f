//go:build unix && !linux

package dbserver

import "syscall"

// sysProcAttr runs a server process as cred (nil: as this process). Only
// Linux can have a child killed when its parent dies; elsewhere a crashed
// test may leave its server running until Stop is called by another run.
func sysProcAttr(cred *account) *syscall.SysProcAttr {
	if cred == nil {
		return nil
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(cred.uid), Gid: uint32(cred.gid)}}
}
