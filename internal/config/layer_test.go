package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestEveryAgentKeyLayers: each global key of agent.conf, set in an
// instance file only, reaches the configuration the agent runs with.
// Layering copies key by key, so a new key that is parsed but not copied
// would be silently dropped for every instance; this fails instead.
func TestEveryAgentKeyLayers(t *testing.T) {
	examples := map[string]string{
		"director":           "192.0.2.9:4000",
		"connection-retries": "7",
		"master-timeout":     "45",
		"moduledir":          "/usr/lib/feedbackd",
		"logfile":            "/var/log/feedbackd/x.log",
		"loglevel":           "DEBUG",
		"secret-file":        "",
		"metrics-listen":     "127.0.0.1:9263",
		"admin-file":         "/etc/feedbackd/admin",
	}
	dir := t.TempDir()
	base := filepath.Join(dir, "agent.conf")
	os.WriteFile(base, []byte("director = 192.0.2.1\n"), 0o644)
	svc := "[service]\nname = web\nprotocol = tcp\nport = 80\nforwarding = DR\nmonitor = constant\nvalue = 50\n"
	plain, err := LoadAgent(base, write(t, dir, "plain.conf", svc))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range agentGlobalKeys {
		ex, ok := examples[key]
		if !ok {
			t.Errorf("global key %s has no example here: add one, and check that LoadAgent copies it from a layer", key)
			continue
		}
		if ex == "" {
			continue // needs a file of its own (access_test.go covers secret-file)
		}
		got, err := LoadAgent(base, write(t, dir, key+".conf", key+" = "+ex+"\n"+svc))
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		got.File, got.Warnings = plain.File, plain.Warnings
		got.Services = plain.Services
		if reflect.DeepEqual(got, plain) {
			t.Errorf("%s = %s in an instance file changed nothing: LoadAgent does not copy it", key, ex)
		}
	}
}

func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
