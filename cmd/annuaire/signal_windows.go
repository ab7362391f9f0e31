package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/windows"
)

// Windows has no signal one process sends another to ask it to stop:
// Go's Process.Signal only kills there, and a console's Ctrl-C reaches
// only the processes of that console. So each annuaire opens a named
// event, Local\annuaire-stop-PID, and "annuaire stop" sets it: the
// Windows way to tell another process of the same session something.

func stopEventName(pid int) string { return fmt.Sprintf(`Local\annuaire-stop-%d`, pid) }

// notifyStop returns a context that ends when the process is asked to
// stop: Ctrl-C or Ctrl-Break (os.Interrupt), its console closing or the
// session ending (syscall.SIGTERM, as Go reports them), or "annuaire
// stop" setting its stop event. If the event cannot be made, the process
// runs without it and says so on stderr.
func notifyStop(ctx context.Context, stderr io.Writer) (context.Context, context.CancelFunc) {
	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(ctx)
	name, err := windows.UTF16PtrFromString(stopEventName(os.Getpid()))
	if err != nil {
		panic(err) // the name has no NUL
	}
	ev, err := windows.CreateEvent(nil, 1, 0, name)
	if err != nil {
		fmt.Fprintf(stderr, "annuaire: \"annuaire stop\" cannot reach this process: CreateEvent %s: %v\n", stopEventName(os.Getpid()), err)
		return ctx, func() { cancel(); stopSignals() }
	}
	// done wakes the waiting goroutine when the command ends first.
	done, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		windows.CloseHandle(ev)
		fmt.Fprintf(stderr, "annuaire: \"annuaire stop\" cannot reach this process: CreateEvent: %v\n", err)
		return ctx, func() { cancel(); stopSignals() }
	}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		i, _ := windows.WaitForMultipleObjects([]windows.Handle{ev, done}, false, windows.INFINITE)
		if i == windows.WAIT_OBJECT_0 {
			cancel()
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			windows.SetEvent(done)
			<-exited
			windows.CloseHandle(ev)
			windows.CloseHandle(done)
			cancel()
			stopSignals()
		})
	}
}

// requestStop asks process pid to stop by setting its stop event.
func requestStop(pid int) error {
	name, err := windows.UTF16PtrFromString(stopEventName(pid))
	if err != nil {
		return err
	}
	ev, err := windows.OpenEvent(windows.EVENT_MODIFY_STATE, false, name)
	if errors.Is(err, windows.ERROR_FILE_NOT_FOUND) {
		return fmt.Errorf("pid %d has no stop event %s (not an annuaire, or one of another session): end it with Ctrl-C in its console, or taskkill /PID %d /F", pid, stopEventName(pid), pid)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", stopEventName(pid), err)
	}
	defer windows.CloseHandle(ev)
	return windows.SetEvent(ev)
}
