package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/annuaire/annuaire/services/web"
)

// classroomBanner is what serve prints with --listen-lan: loudly, that
// the directory is reachable from the room's network, and which writes
// need which token; then what the students set to find it.
func classroomBanner(f *serveFlags, l *listeners) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n!!! --listen-lan %s: annuaire is REACHABLE FROM THE NETWORK !!!\n", f.listenLAN)
	dns := l.dnsUDP.LocalAddr().String()
	fmt.Fprintf(&b, "    dns   %-28s anyone who reaches it can query the zone\n", dns)
	webAddr := ""
	if s := l.socket("web", "tcp"); s != nil {
		webAddr = s.addr().String()
		fmt.Fprintf(&b, "    web   %-28s anyone can read the directory, the class view and the chains\n", "http://"+webAddr+"/")
	}
	b.WriteString("    writes need a token:\n")
	fmt.Fprintf(&b, "      the teacher's   %s: any service, and the mail received\n", filepath.Join(f.data, web.TokenFile))
	limit := "no instance limit"
	if f.tokenMaxInstances > 0 {
		limit = "at most " + strconv.Itoa(f.tokenMaxInstances) + " instances"
	}
	names := "names free, first come first served"
	if f.tokenPrefix {
		names = "names NAME or NAME-*"
	}
	fmt.Fprintf(&b, "      a student's     annuaire token add NAME: that student's services only (%s, %s writes/s, %s)\n",
		limit, strconv.FormatFloat(f.tokenRate, 'g', -1, 64), names)
	update := "refused: no --tsig key"
	if len(f.keys) > 0 {
		update = "a --tsig key"
	}
	fmt.Fprintf(&b, "      DNS UPDATE      %s\n", update)
	switch list, err := web.TokensIn(f.data).List(); {
	case err != nil:
		fmt.Fprintf(&b, "    student tokens: cannot read them: %v\n", err)
	case len(list) == 0:
		fmt.Fprintf(&b, "    student tokens: none yet (annuaire token add NAME --data %s)\n", f.data)
	default:
		var n []string
		for _, t := range list {
			n = append(n, t.Name)
		}
		fmt.Fprintf(&b, "    student tokens: %s\n", strings.Join(n, ", "))
	}
	if webAddr != "" {
		fmt.Fprintf(&b, "    students: export ANNUAIRE_SERVER=%s ANNUAIRE_WEB=%s ANNUAIRE_TOKEN=...\n", dns, webAddr)
	}
	b.WriteString("\n")
	return b.String()
}
