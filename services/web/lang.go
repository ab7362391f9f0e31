package web

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// The page speaks English or French, the course's language: ?lang=fr or
// ?lang=en if given, else the browser's Accept-Language (RFC 9110
// section 12.5.4), else English. The API, the logs and the CLI stay in
// English. A French text is looked up by its English text, the one
// written in page.html and draw.go; one without a translation shows in
// English, and TestFrenchComplete finds it.

// A lang is a language the page is drawn in.
type lang int

const (
	english lang = iota
	french
	numLangs
)

var langCodes = [numLangs]string{"en", "fr"}

func (l lang) String() string { return langCodes[l] }

// pickLang chooses the page's language for r.
func pickLang(r *http.Request) lang {
	if q := r.URL.Query().Get("lang"); q != "" {
		if l, ok := langOf(q); ok {
			return l
		}
	}
	best, bestQ := english, 0.0
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			var err error
			if q, err = strconv.ParseFloat(v, 64); err != nil {
				continue
			}
		}
		// The first of the highest quality wins (section 12.4.2).
		if l, ok := langOf(tag); ok && q > bestQ {
			best, bestQ = l, q
		}
	}
	return best
}

// langOf reads a language tag: "fr", "fr-CA", "en-GB" (RFC 4647 section
// 3.3.1, a prefix of subtags).
func langOf(tag string) (lang, bool) {
	primary, _, _ := strings.Cut(strings.TrimSpace(tag), "-")
	for l, code := range langCodes {
		if strings.EqualFold(primary, code) {
			return lang(l), true
		}
	}
	return english, false
}

// t is text in l.
func (l lang) t(text string) string {
	if l == french {
		if fr, ok := frenchText[text]; ok {
			return fr
		}
	}
	return text
}

// f is fmt.Sprintf of format in l.
func (l lang) f(format string, a ...any) string { return fmt.Sprintf(l.t(format), a...) }

// processRE reads view.go's process(): "echo server on its well-known
// port, listening on port 7/tcp".
var processRE = regexp.MustCompile(`^(.+) server( on its well-known port)?, listening on port (\d+)/(\w+)$`)

// process is a process's description in l; one written by the server
// itself (from its TXT) stays as it is.
func (l lang) process(p string) string {
	m := processRE.FindStringSubmatch(p)
	if l == english || m == nil {
		return p
	}
	if m[2] != "" {
		return l.f("%s server on its well-known port, listening on port %s/%s", m[1], m[3], m[4])
	}
	return l.f("%s server, listening on port %s/%s", m[1], m[3], m[4])
}

// frenchText is the page in French, by its English text. The course's
// own words where it has them: nom symbolique, adresse IP, numéro de
// port, processus.
var frenchText = map[string]string{
	// page.html
	"annuaire — name → address → port": "annuaire — nom → adresse → port",
	"name → address → port":            "nom → adresse → port",
	`A client asks for a service by its <b>symbolic name</b> (<i>nom symbolique</i>: echo, http, mail, telnet).
  DNS turns the name into an <b>IP address</b> (<i>adresse IP</i>); an SRV record also gives the
  <b>port number</b> (<i>numéro de port</i>), which picks one <b>process</b> on that machine.
  The client then calls <code>socket</code> and <code>connect</code>; the server had called <code>socket</code>, <code>bind</code>, <code>listen</code> and waits in <code>accept</code>.`: `Un client demande un service par son <b>nom symbolique</b> (echo, http, mail, telnet).
  Le DNS traduit le nom en <b>adresse IP</b> ; un enregistrement SRV donne aussi le
  <b>numéro de port</b>, qui désigne un <b>processus</b> sur cette machine.
  Le client appelle alors <code>socket</code> et <code>connect</code> ; le serveur a appelé <code>socket</code>, <code>bind</code>, <code>listen</code> et attend dans <code>accept</code>.`,
	"the directory as of serial %d: reload the page to see changes": "l'annuaire au numéro de série %d : rechargez la page pour voir les changements",
	"Follow a name":             "Suivre un nom",
	"Name":                      "Nom",
	"echo, http, mail, telnet…": "echo, http, mail, telnet…",
	"Look up":                   "Chercher",
	"Received mail":             "Courrier reçu",
	"(no subject)":              "(sans objet)",
	"from %s":                   "de %s",
	"to %s":                     "à %s",
	"at %s":                     "le %s",
	"zone":                      "zone",
	"serial":                    "numéro de série",
	"Directory":                 "Annuaire",
	"instance":                  "instance",
	"instances":                 "instances",
	"Each service type shows the chain the client follows, as <code>annuaire lookup NAME</code> finds it by asking DNS:": "Chaque type de service montre la chaîne que suit le client, telle que <code>annuaire lookup NOM</code> la trouve en interrogeant le DNS :",
	"DNS record":                   "enregistrement DNS",
	"host":                         "hôte",
	"address":                      "adresse",
	"port":                         "port",
	"process":                      "processus",
	"red":                          "rouge",
	"a step that finds nothing is": "une étape qui ne trouve rien est en",
	"Below it, the registry's instances. The page updates by itself when services come and go.": "En dessous, les instances de l'annuaire. La page se met à jour d'elle-même quand des services arrivent ou partent.",
	"No service is registered. Try: annuaire register echo 7007":                                "Aucun service n'est enregistré. Essayez : annuaire register echo 7007",
	"%d more service types are listed without a chain: the page looks up at most %d.":           "%d autres types de service sont listés sans chaîne : la page en cherche au plus %d.",
	"%d/%d passing":              "%d/%d en service",
	"Chain from":                 "Chaîne de",
	"at":                         "à",
	"asked DNS afresh, no cache": "DNS interrogé à neuf, sans cache",
	"answers may come from the resolver's cache, up to their TTL old": "les réponses peuvent venir du cache du résolveur, vieilles au plus de leur TTL",
	"health":      "santé",
	"prio/weight": "prio/poids",
	"check":       "contrôle",
	"txt":         "txt",
	"id":          "id",
	"owner":       "propriétaire",
	"none":        "aucune",
	"passing":     "en service",
	"critical":    "en panne",
	"teacher":     "enseignant",
	"Critical: DNS leaves an instance out of its answers until its check passes again.": "En panne : le DNS laisse une instance hors de ses réponses jusqu'à ce que son contrôle passe de nouveau.",
	"Try it:":                             "Essayez :",
	"cached":                              "en cache",
	"answered from the resolver's cache":  "réponse tirée du cache du résolveur",
	"Name <code>%s</code>":                "Nom <code>%s</code>",
	"service":                             "service",
	"in zone":                             "dans la zone",
	"Where the client connects, in order": "Où le client se connecte, dans l'ordre",
	"priority":                            "priorité",
	"weight":                              "poids",
	"Class":                               "La classe",
	"Who registered what: each student's services and their health; the teacher's are in the directory above.": "Qui a enregistré quoi : les services de chaque étudiant et leur santé ; ceux de l'enseignant sont dans l'annuaire ci-dessus.",
	"student":    "étudiant",
	"services":   "services",
	"no service": "aucun service",
	"live: the page follows the registry as it changes": "en direct : la page suit l'annuaire à mesure qu'il change",
	"live (polling every 2 s)":                          "en direct (interrogé toutes les 2 s)",
	"cannot reach the server:":                          "serveur injoignable :",
	"connection lost, reconnecting…":                    "connexion perdue, reconnexion…",
	"Looking up":                                        "Recherche de",
	"lookup failed:":                                    "échec de la recherche :",

	// draw.go: the chain's captions
	"name":          "nom",
	"symbolic name": "nom symbolique",
	"well-known port, from the IANA catalog built in": "port bien connu, du catalogue IANA intégré",
	"well-known port":        "port bien connu",
	"the name itself":        "le nom lui-même",
	"the %s target":          "la cible du %s",
	"SRV query":              "requête SRV",
	"MX query":               "requête MX",
	"address query":          "requête d'adresse",
	"from the SRV record":    "de l'enregistrement SRV",
	"the mail port":          "le port du courrier",
	"no process":             "aucun processus",
	"not reachable":          "injoignable",
	"given":                  "donné",
	"%s · picks the process": "%s · désigne le processus",
	"not in the registry":    "absent de l'annuaire",
	"the chain points where no registered instance is": "la chaîne pointe là où aucune instance n'est enregistrée",
	"%s at %s":      "%s sur %s",
	"asked %s":      "demandé à %s",
	"ttl %s":        "ttl %s",
	"lookup %s: %s": "recherche de %s : %s",
	"not looked up: the page draws at most %d chains": "pas cherché : la page dessine au plus %d chaînes",
	"waiting for the lookups…":                        "en attente des recherches…",
	"%s every %v":                                     "%s toutes les %v",
	"error":                                           "erreur",
	"service %s over %s in zone %s":                   "service %s sur %s dans la zone %s",
	"%s server on its well-known port, listening on port %s/%s": "serveur %s sur son port bien connu, à l'écoute sur le port %s/%s",
	"%s server, listening on port %s/%s":                        "serveur %s, à l'écoute sur le port %s/%s",
	// the resolver's reasons for a step without a query
	"no query: the address came in the answer's additional section": "pas de requête : l'adresse est venue dans la section additionnelle de la réponse",
	"no query: the name is read as typed":                           "pas de requête : le nom est lu tel qu'il est tapé",
	"no query: the catalog is built in":                             "pas de requête : le catalogue est intégré",
	"port 0 cannot be dialled: target skipped":                      "le port 0 ne peut être appelé : cible ignorée",
}
