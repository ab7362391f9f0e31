package web

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/resolver"
	"github.com/annuaire/annuaire/services/mail"
)

//go:embed page.html
var pageHTML string

// pageTemplates is page.html with the helpers it calls, one per language
// (lang.go): t and f say a text in it. The file is part of the build: a
// template that does not parse is a broken binary.
var pageTemplates = func() (ts [numLangs]*template.Template) {
	base := template.Must(template.New("page").Funcs(template.FuncMap{
		"join":    strings.Join,
		"clock":   func(t time.Time) string { return t.Local().Format("15:04:05 MST") },
		"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"shown":   shown,
	}).Funcs(langFuncs(english)).Parse(pageHTML))
	for l := range numLangs {
		ts[l] = template.Must(base.Clone()).Funcs(langFuncs(l))
	}
	return ts
}()

// langFuncs are the template's helpers that speak l.
func langFuncs(l lang) template.FuncMap {
	return template.FuncMap{
		"lang":      l.String,
		"t":         l.t,
		"f":         l.f,
		"checkText": func(c *registry.Check) string { return checkText(l, c) },
		"facts":     func(m message) []string { return m.facts(l) },
	}
}

// pageData is what page.html draws.
type pageData struct {
	Zone      string
	Serial    uint32
	Directory template.HTML // the "directory" template, rendered once per registry change

	LookupName string      // the lookup box's input
	Lookup     *lookupView // its result; nil when no name was asked
	Messages   []message
}

// lookupView is the lookup box's result: the chain as the directory's
// cards draw it, process included, or why there is none.
type lookupView struct {
	Trace *resolver.Chain
	Chain []box
	Err   string
}

// message is one received mail as the page shows it.
type message struct{ mail.Message }

// facts are the message's envelope, for its one line of small print.
func (m message) facts(l lang) []string {
	var f []string
	if m.From != "" {
		f = append(f, l.f("from %s", m.From))
	}
	if len(m.To) > 0 {
		f = append(f, l.f("to %s", strings.Join(m.To, ", ")))
	}
	if !m.Received.IsZero() {
		f = append(f, l.f("at %s", m.Received.Local().Format("2006-01-02 15:04:05 MST")))
	}
	return f
}

// directoryCache holds the directory's HTML for one registry serial and
// set of chains, so that the page and every event stream render it once
// per change, not once per request.
type directoryCache struct {
	mu     sync.Mutex
	serial uint32    // guarded by mu
	set    *chainSet // guarded by mu: the chains it was drawn with, nil for none yet
	html   []byte    // guarded by mu
}

// directoryHTML renders the directory section's content for snap with
// set's chains (nil while they are looked up).
func (s *Server) directoryHTML(snap *registry.Snapshot, set *chainSet, l lang) ([]byte, error) {
	c := &s.dirCache[l]
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.html != nil && c.serial == snap.Serial() && c.set == set {
		return c.html, nil
	}
	lookups, _ := s.chainLookup()
	var b bytes.Buffer
	if err := pageTemplates[l].ExecuteTemplate(&b, "directory", s.drawDirectory(snap, set, lookups != nil, l)); err != nil {
		return nil, err
	}
	c.serial, c.set, c.html = snap.Serial(), set, b.Bytes()
	return c.html, nil
}

// pageCache holds the last page rendered without a lookup, and what it
// was drawn from, so that loads of an unchanged directory cost no
// rendering.
type pageCache struct {
	mu       sync.Mutex
	serial   uint32    // guarded by mu
	set      *chainSet // guarded by mu
	messages []byte    // guarded by mu: the received mail's JSON, its key
	page     *asset    // guarded by mu
}

// page answers GET /: the directory and every chain, drawn by the server,
// and with ?name=NAME the lookup box's result for NAME, so that the form
// works without script too. It waits for the chains of a registry change
// it is the first to see (one Lookup per service type, see chains).
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	snap := s.Registry.Snapshot()
	serial := snap.Serial()
	set := s.chains(snap)
	msgs, msgsKey := s.received()
	var name string
	if r.URL.RawQuery != "" {
		name = r.URL.Query().Get("name")
	}
	l := pickLang(r)
	w.Header().Set("Content-Language", l.String())
	w.Header().Add("Vary", "Accept-Language")
	c := &s.pageCache[l]
	if name == "" {
		c.mu.Lock()
		p := c.page
		if p == nil || c.serial != serial || c.set != set || !bytes.Equal(c.messages, msgsKey) {
			p = nil
		}
		c.mu.Unlock()
		if p != nil {
			p.ServeHTTP(w, r)
			return
		}
	}

	dir, err := s.directoryHTML(snap, set, l)
	if err != nil {
		s.pageError(w, err)
		return
	}
	d := pageData{
		Zone:      s.zone(),
		Serial:    serial,
		Directory: template.HTML(dir),
		Messages:  msgs,
	}
	if name != "" {
		d.LookupName = name
		d.Lookup = s.lookupBox(r, snap, name, l)
	}
	var b bytes.Buffer
	if err := pageTemplates[l].Execute(&b, d); err != nil {
		s.pageError(w, err)
		return
	}
	// The page is built for this request, but it still gets the embedded
	// files' validator: a reload of an unchanged page is a 304.
	p := newAsset(b.Bytes(), "text/html; charset=utf-8", false)
	if name == "" {
		c.mu.Lock()
		c.serial, c.set, c.messages, c.page = serial, set, msgsKey, p
		c.mu.Unlock()
	}
	p.ServeHTTP(w, r)
}

func (s *Server) pageError(w http.ResponseWriter, err error) {
	s.logger().Error("web: rendering the page", "err", err)
	http.Error(w, "rendering the page: "+err.Error(), http.StatusInternalServerError)
}

// lookupBox runs the lookup box's name and finds the registered processes
// at its candidates, as the directory's cards do.
func (s *Server) lookupBox(r *http.Request, snap *registry.Snapshot, name string, l lang) *lookupView {
	trace, _, err := s.lookupName(r.Context(), name)
	if err != nil {
		return &lookupView{Err: err.Error()}
	}
	procs := s.processesAt(snap, trace.Service, trace.Proto, trace.Candidates)
	return &lookupView{Trace: trace, Chain: chainBoxes(trace, procs, true, l)}
}

// received returns the mail the page shows and its JSON, which says
// whether the cached page still shows it: none on a listener reachable
// beyond loopback, where the page has no token to show it with.
func (s *Server) received() ([]message, []byte) {
	if s.Messages == nil || s.exposed.Load() {
		return nil, nil
	}
	list := s.Messages()
	key, err := json.Marshal(list)
	if err != nil {
		s.logger().Warn("web: received mail not shown on the page", "err", err)
		return nil, nil
	}
	msgs := make([]message, len(list))
	for i, m := range list {
		msgs[i] = message{m}
	}
	return msgs, key
}

// pageEvents streams the directory section as the page draws it, as
// Server-Sent Events (WHATWG HTML section 9.2): a "directory" event each
// time the registry changes, once when the change is seen and again with
// its chains once they are looked up. Each data is the section's HTML,
// which the page's script puts in place, drawn once per change for every
// stream in the page's language. The event id is the serial whose chains
// it shows; a page loaded at serial N opens the stream with ?serial=N,
// and a reconnecting browser sends Last-Event-ID, so neither gets again
// what it has.
func (s *Server) pageEvents(w http.ResponseWriter, r *http.Request) {
	var have uint64
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		have, _ = strconv.ParseUint(id, 10, 32)
	} else {
		have, _ = strconv.ParseUint(r.URL.Query().Get("serial"), 10, 32)
	}
	l := pickLang(r)
	follow := func(snap *registry.Snapshot, stop <-chan struct{}) { s.followPage(snap, stop, l) }
	s.stream(w, r, &s.pages[l], follow, false, func(sw *streamWriter, snap *registry.Snapshot) (uint32, bool, error) {
		if uint64(snap.Serial()) == have {
			return snap.Serial(), true, nil
		}
		send := func(set *chainSet, final bool) error {
			b, err := s.directoryEvent(snap, set, final, l)
			if err == nil {
				err = sw.write(b)
			}
			if err == nil {
				err = sw.flush()
			}
			return err
		}
		if lookups, _ := s.chainLookup(); lookups != nil && !s.chainsReady(snap) {
			// The directory at once, the chains when they come.
			if err := send(nil, false); err != nil {
				return 0, false, err
			}
		}
		return snap.Serial(), true, send(s.chains(snap), true)
	})
}

// followPage publishes the directory as each change leaves it, in l,
// until stop is closed or the server shuts down.
func (s *Server) followPage(snap *registry.Snapshot, stop <-chan struct{}, l lang) {
	lookups, _ := s.chainLookup()
	coalesce := time.NewTimer(0)
	<-coalesce.C
	for {
		select {
		case <-snap.Changed():
		case <-stop:
			return
		case <-s.closing:
			return
		}
		// A burst of registrations makes one event, not hundreds.
		coalesce.Reset(coalesceDelay)
		select {
		case <-coalesce.C:
		case <-stop:
			return
		case <-s.closing:
			return
		}
		next := s.Registry.Snapshot()
		if lookups != nil && !s.chainsReady(next) {
			if b, err := s.directoryEvent(next, nil, false, l); err == nil {
				s.pages[l].publish(stop, &feedEvent{prev: snap.Serial(), serial: next.Serial(), data: b})
			}
		}
		if b, err := s.directoryEvent(next, s.chains(next), true, l); err == nil {
			s.pages[l].publish(stop, &feedEvent{prev: snap.Serial(), serial: next.Serial(), final: true, data: b})
		} else {
			s.logger().Error("web: drawing the directory", "err", err)
		}
		snap = next
	}
}

// directoryEvent is a "directory" event of snap's directory section.
func (s *Server) directoryEvent(snap *registry.Snapshot, set *chainSet, final bool, l lang) ([]byte, error) {
	dir, err := s.directoryHTML(snap, set, l)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if final {
		fmt.Fprintf(&b, "id: %d\n", snap.Serial())
	}
	b.WriteString("event: directory\n")
	writeEventData(&b, dir)
	return b.Bytes(), nil
}

// writeEventData writes data as the data lines of one event. Any of CR,
// LF and CRLF ends a line in an event stream, so each is a line break
// here; the browser joins the lines with LF, which HTML reads as it reads
// the CR or CRLF it replaces (WHATWG HTML section 13.2.3.5).
func writeEventData(b *bytes.Buffer, data []byte) {
	for len(data) > 0 {
		i := bytes.IndexAny(data, "\r\n")
		line := data
		if i >= 0 {
			line = data[:i]
		}
		b.WriteString("data: ")
		b.Write(line)
		b.WriteByte('\n')
		if i < 0 {
			break
		}
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	b.WriteByte('\n')
}
