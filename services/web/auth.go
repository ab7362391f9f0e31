package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/annuaire/annuaire/registry"
)

// Defaults for the student tokens' limits (Server's fields).
const (
	DefaultTokenMaxInstances = 20
	DefaultTokenRate         = 10 // writes per second, in bursts of twice that
)

// A principal is who a write is made as: the administrator (Name "") or
// a student token.
type principal struct {
	Name         string // the token's name; "" for the administrator
	MaxInstances int    // with a Name: how many instances it may hold; 0 means no limit
}

type principalKey struct{}

// who is the principal that authorized put in the request's context.
func who(r *http.Request) principal {
	p, _ := r.Context().Value(principalKey{}).(principal)
	return p
}

// owner names a principal in messages and on the page.
func (p principal) owner() string {
	if p.Name == "" {
		return "admin"
	}
	return p.Name
}

// authorized lets a request through only with "Authorization: Bearer
// TOKEN" (RFC 6750 section 2.1), TOKEN being the administrator's or a
// student's (Tokens), and puts who it is in the request's context. The
// comparisons take the same time whatever the guess, so a token cannot be
// found a byte at a time. A student's writes are rate-limited (429).
func (s *Server) authorized(next http.HandlerFunc) http.HandlerFunc {
	return s.authorizedAs(next, false)
}

// adminOnly is authorized for the administrator's token alone: a
// student's gets 403.
func (s *Server) adminOnly(next http.HandlerFunc) http.HandlerFunc {
	return s.authorizedAs(next, true)
}

func (s *Server) authorizedAs(next http.HandlerFunc, adminOnly bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		const scheme = "bearer "
		h := r.Header.Get("Authorization")
		challenge := `Bearer realm="annuaire"`
		msg := "this request needs Authorization: Bearer TOKEN (the token is in the data directory's token file)"
		if len(h) > len(scheme) && strings.EqualFold(h[:len(scheme)], scheme) {
			got := strings.TrimSpace(h[len(scheme):])
			if s.Token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.Token)) == 1 {
				next(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, principal{})))
				return
			}
			if s.Tokens != nil {
				if info, ok := s.Tokens.Check(got); ok {
					p := principal{Name: info.Name, MaxInstances: s.maxInstances(info)}
					if adminOnly {
						writeError(w, http.StatusForbidden, "this needs the administrator's token, not "+p.Name+"'s")
						return
					}
					if retry, ok := s.limiter.allow(p.Name, time.Now(), s.tokenRate()); !ok {
						s.logger().Warn("web: write rate limited", "token", p.Name, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
						w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retry.Seconds()))))
						writeError(w, http.StatusTooManyRequests, "token "+p.Name+" writes faster than "+strconv.FormatFloat(s.tokenRate(), 'g', -1, 64)+" per second; retry later")
						return
					}
					next(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
					return
				}
			}
			// RFC 6750 section 3.1.
			challenge += `, error="invalid_token"`
			msg = "wrong token"
			if name := TokenName(got); name != "" && s.Tokens != nil {
				msg = "wrong token: no token " + name + " (revoked, or never made: annuaire token list)"
				if _, err := s.Tokens.read(name); err == nil {
					msg = "wrong token: not the secret of " + name + "'s token"
				}
			}
		}
		if s.Token == "" && s.Tokens == nil {
			msg = "writes are disabled: the server has no token"
		}
		s.logger().Warn("web: refused write", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "reason", msg)
		w.Header().Set("WWW-Authenticate", challenge)
		writeError(w, http.StatusUnauthorized, msg)
	}
}

func (s *Server) maxInstances(info TokenInfo) int {
	switch {
	case info.MaxInstances > 0:
		return info.MaxInstances
	case s.TokenMaxInstances < 0:
		return 0
	case s.TokenMaxInstances == 0:
		return DefaultTokenMaxInstances
	}
	return s.TokenMaxInstances
}

func (s *Server) tokenRate() float64 {
	if s.TokenRate <= 0 {
		return DefaultTokenRate
	}
	return s.TokenRate
}

// checkName refuses, with --token-prefix, a student's service name that
// does not start with the token's name and a hyphen.
func (s *Server) checkName(p principal, name string) error {
	if !s.TokenPrefix || p.Name == "" || registry.SameName(name, p.Name) || strings.HasPrefix(registry.FoldName(name), p.Name+"-") {
		return nil
	}
	return &prefixError{name: name, by: p.Name}
}

// A prefixError is a student's service name without the student's prefix.
type prefixError struct{ name, by string }

func (e *prefixError) Error() string {
	return "name " + quote(e.name) + ": on this server the names of " + e.by + "'s services start with " + e.by + "- (" + e.by + "-echo, for one)"
}

// ownershipError answers a write refused for its owner or its quota: 403
// Forbidden, the token being valid but not for this (RFC 9110 section
// 15.5.4). It reports whether err was one.
func ownershipError(w http.ResponseWriter, err error) bool {
	var pe *prefixError
	if errors.Is(err, registry.ErrNotOwner) || errors.Is(err, registry.ErrQuota) || errors.As(err, &pe) {
		writeError(w, http.StatusForbidden, err.Error())
		return true
	}
	return false
}

// A writeLimiter keeps, per student token, the time its next write may
// come (the generic cell rate algorithm): a token may write rate times a
// second, in bursts of twice that.
type writeLimiter struct {
	mu  sync.Mutex
	tat map[string]time.Time // guarded by mu: each name's theoretical arrival time
}

// allow reports whether name may write at now, and else how long to wait.
func (l *writeLimiter) allow(name string, now time.Time, rate float64) (time.Duration, bool) {
	interval := time.Duration(float64(time.Second) / rate)
	// The tolerance: 2×rate writes at once (at least one).
	burst := time.Duration(max(0, math.Ceil(2*rate)-1)) * interval
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tat == nil {
		l.tat = make(map[string]time.Time)
	}
	tat := l.tat[name]
	if tat.Before(now) {
		tat = now
	}
	if wait := tat.Sub(now) - burst; wait > 0 {
		return wait, false
	}
	if len(l.tat) >= 1024 { // names of revoked tokens: drop the idle ones
		for n, t := range l.tat {
			if t.Before(now) {
				delete(l.tat, n)
			}
		}
	}
	l.tat[name] = tat.Add(interval)
	return 0, true
}
