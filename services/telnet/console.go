package telnet

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/annuaire/annuaire/services/netserver"
)

// conn is one console session.
type conn struct {
	srv *Console
	nc  *netserver.Conn // its Context ends with a forced close
	nvt nvt
}

func (s *Console) idleTimeout() time.Duration { return cmp.Or(max(s.IdleTimeout, 0), 5*time.Minute) }

const goodbyeShutdown = "annuaire is shutting down. Goodbye."

func (c *conn) serve() {
	s := c.srv
	c.nvt = nvt{r: bufio.NewReaderSize(c.nc, 1024), w: bufio.NewWriterSize(c.nc, 4096), flush: c.flush}
	banner := s.Banner
	if banner == "" {
		banner = defaultBanner(c.nc.LocalAddr())
	}
	if c.print(banner) != nil {
		return
	}
	for {
		if !c.nc.StartIdle(s.idleTimeout()) {
			c.print("\n" + goodbyeShutdown)
			return
		}
		if c.prompt() != nil {
			return
		}
		line, err := c.nvt.readLine(cmp.Or(max(s.MaxLine, 0), 1024))
		if !c.nc.EndIdle() {
			c.print("\n" + goodbyeShutdown)
			return
		}
		var ne net.Error
		switch {
		case errors.Is(err, errLineTooLong):
			err = c.print(fmt.Sprintf("line too long (at most %d bytes)", cmp.Or(max(s.MaxLine, 0), 1024)))
		case errors.Is(err, errInterrupt):
			err = c.print("") // as a shell does on ^C: drop the line, new prompt
		case errors.As(err, &ne) && ne.Timeout():
			c.print(fmt.Sprintf("\nidle for %s, closing. Goodbye.", s.idleTimeout()))
			return
		case err != nil:
			return // the client went away
		default:
			var quit bool
			quit, err = c.run(line)
			if quit {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// defaultBanner says what the client reached and how: the course's chain.
func defaultBanner(local net.Addr) string {
	return fmt.Sprintf(`annuaire console at %s: the telnet service (port 23 by convention).
You reached it by the chain: name (telnet) -> DNS (_telnet._tcp SRV) -> host -> address -> port -> this process.
Type "help" for the commands, "quit" to leave.`, local)
}

const help = `Commands:
  help          this text
  list          the directory: every service with its address and port
  lookup NAME   follow NAME through the chain name -> address -> port
  quit          close the connection`

// run runs one command line; quit says the session is over.
func (c *conn) run(line string) (quit bool, err error) {
	s := c.srv
	f := strings.Fields(line)
	if len(f) == 0 {
		return false, nil
	}
	s.commands.Add(1)
	switch strings.ToLower(f[0]) {
	case "help", "?":
		return false, c.print(help)
	case "list", "ls":
		if len(f) != 1 {
			return false, c.print("usage: list")
		}
		if s.List == nil {
			return false, c.print("list: not available (this console has no directory attached)")
		}
		ctx, cancel := context.WithTimeout(c.nc.Context(), cmp.Or(max(s.CommandTimeout, 0), 10*time.Second))
		defer cancel()
		out, err := s.List(ctx)
		if err != nil {
			return false, c.print("list: " + err.Error())
		}
		return false, c.print(out)
	case "lookup":
		if len(f) != 2 {
			return false, c.print("usage: lookup NAME   (for example: lookup echo)")
		}
		if s.Lookup == nil {
			return false, c.print("lookup: not available (this console has no resolver attached)")
		}
		ctx, cancel := context.WithTimeout(c.nc.Context(), cmp.Or(max(s.CommandTimeout, 0), 10*time.Second))
		defer cancel()
		out, err := s.Lookup(ctx, f[1])
		if err != nil {
			return false, c.print("lookup " + f[1] + ": " + err.Error())
		}
		return false, c.print(out)
	case "quit", "exit", "logout", "bye":
		c.print("Goodbye.")
		return true, nil
	default:
		return false, c.print(fmt.Sprintf("unknown command %q: type help", f[0]))
	}
}

// print writes text as NVT lines, adding the final line end.
func (c *conn) print(text string) error {
	text = strings.TrimRight(text, "\r\n")
	c.nvt.w.WriteString(nvtText(text + "\n"))
	return c.flush()
}

func (c *conn) prompt() error {
	p := c.srv.Prompt
	if p == "" {
		p = "annuaire> "
	}
	c.nvt.w.WriteString(nvtText(p))
	return c.flush()
}

func (c *conn) flush() error {
	c.nc.SetWriteDeadline(time.Now().Add(cmp.Or(max(c.srv.WriteTimeout, 0), 30*time.Second)))
	if err := c.nvt.w.Flush(); err != nil {
		return fmt.Errorf("telnet: write to %s: %w", c.nc.RemoteAddr(), err)
	}
	return nil
}
