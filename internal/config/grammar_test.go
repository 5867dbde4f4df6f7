package config

import (
	"strings"
	"testing"

	"github.com/lvs-feedbackd/feedbackd/internal/monitor"
)

// TestOneGrammar: a monitor key is read by -t exactly as the monitor reads
// it when the agent starts: same verdict, same words (issue 14, item 3).
// "interval = 1e3" used to fail -t and be 16m40s to the monitor.
func TestOneGrammar(t *testing.T) {
	for _, c := range []struct{ kind, key, v string }{
		{"cpuload", "interval", "1e3"},
		{"cpuload", "interval", "+2"},
		{"cpuload", "interval", "5ms"},
		{"cpuload", "interval", "0.5"},
		{"exec", "timeout", "0.05"},
		{"exec", "timeout", "2"},
		{"constant", "value", "+5"},
		{"constant", "value", "101"},
		{"constant", "value", "7"},
		{"http", "url", "ftp://host/"},
		{"http", "url", "http://u:p@host/"},
		{"http", "url", "http://127.0.0.1:8080/health"},
		{"http", "method", "POST"},
		{"http", "method", "head"},
		{"http", "max-redirects", "11"},
		{"http", "max-redirects", "-1"},
		{"http", "max-redirects", "3"},
		{"http", "response-time", "5ms"},
		{"http", "response-time", "0.5"},
		{"http", "response-time", "7"}, // not under the default timeout
		{"http", "body-health", "maybe"},
		{"http", "body-health", "YES"},
		{"http", "timeout", "0.05"},
		{"tcp", "connect", "127.0.0.1"},
		{"tcp", "connect", "[::1]:80"},
		{"tcp", "connect", "localhost:80"},
		{"loadavg", "average", "10"},
		{"loadavg", "average", "15"},
		{"cpuload, http", "timeout", "0.05"},
		{"cpuload, http", "response-time", "9"},
		{"cpuload, http", "method", "HEAD"},
	} {
		text := "director = 192.0.2.1\n[service]\nname = web\nprotocol = tcp\nport = 80\nforwarding = DR\nmonitor = " + c.kind + "\n"
		params := map[string]string{c.key: c.v}
		base := map[string]string{"http": "url", "cpuload, http": "url", "tcp": "connect"}
		if k, ok := base[c.kind]; ok && k != c.key {
			v := map[string]string{"url": "http://127.0.0.1/", "connect": "127.0.0.1:80"}[k]
			text += k + " = " + v + "\n"
			params[k] = v
		}
		switch c.kind {
		case "exec":
			text += "command = true\n"
			params["command"] = "true"
		case "constant":
			if c.key != "value" {
				text += "value = 1\n"
				params["value"] = "1"
			}
		}
		text += c.key + " = " + c.v + "\n"
		_, cfgErr := ParseAgent("a.conf", []byte(text))
		m, monErr := monitor.New(c.kind, params, monitor.Options{})
		if m != nil {
			m.Close()
		}
		if (cfgErr == nil) != (monErr == nil) {
			t.Errorf("%s %s = %q: config says %v, monitor says %v", c.kind, c.key, c.v, cfgErr, monErr)
			continue
		}
		if cfgErr == nil {
			continue
		}
		es := parseErrors(t, cfgErr)
		if len(es) != 1 || es[0].Key != c.key || !strings.HasSuffix(monErr.Error(), c.key+": "+es[0].Msg) {
			t.Errorf("%s %s = %q: config says %v, monitor says %v; want the same words", c.kind, c.key, c.v, cfgErr, monErr)
		}
	}
}
