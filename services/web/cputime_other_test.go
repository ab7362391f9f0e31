//go:build !unix

package web

import "time"

// cpuTime is 0 where getrusage(2) is missing: cpu-ms/op reads 0.
func cpuTime() time.Duration { return 0 }
