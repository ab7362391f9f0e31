//go:build !unix

package readme

import "os/exec"

// ownGroup does nothing where there are no Unix process groups; the
// README's transcripts are Unix shell sessions anyway.
func ownGroup(cmd *exec.Cmd) {}

// killGroup kills cmd alone.
func killGroup(cmd *exec.Cmd) { cmd.Process.Kill() }
