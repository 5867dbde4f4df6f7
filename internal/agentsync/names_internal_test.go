package agentsync

import (
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	long := strings.Repeat("a", 240) // 16 + 240 + 8 > 255
	for _, tc := range []struct {
		file, name string
		skip       bool
		bad        bool
	}{
		{file: "web.conf", name: "web"},
		{file: "web-frontend.conf", name: "web-frontend"},
		{file: "a.b_c.conf", name: "a.b_c"},
		{file: "9lives.conf", name: "9lives"},
		// Editor, package manager and example leftovers: ignored.
		{file: "web.conf~", skip: true},
		{file: ".web.conf.swp", skip: true},
		{file: ".#web.conf", skip: true},
		{file: "#web.conf#", skip: true},
		{file: "web.conf.dpkg-old", skip: true},
		{file: "web.conf.dpkg-dist", skip: true},
		{file: "web.conf.rpmnew", skip: true},
		{file: "web.conf.rpmsave", skip: true},
		{file: "example.conf.sample", skip: true},
		{file: ".conf", skip: true},
		{file: "README", skip: true},
		// Meant as instances, but the name is not usable: refused.
		{file: "my web.conf", name: "my web", bad: true},
		{file: "-web.conf", name: "-web", bad: true},
		{file: "_web.conf", name: "_web", bad: true},
		{file: "a@b.conf", name: "a@b", bad: true},
		{file: "#web.conf", name: "#web", bad: true},
		{file: long + ".conf", name: long, bad: true},
	} {
		name, skip, err := classify(tc.file)
		if (skip != "") != tc.skip || (err != nil) != tc.bad || (!tc.skip && name != tc.name) {
			t.Errorf("classify(%q) = %q, skip %q, err %v; want name %q skip %v bad %v", tc.file, name, skip, err, tc.name, tc.skip, tc.bad)
		}
	}
}

func TestUnitNames(t *testing.T) {
	for name, want := range map[string]string{
		"web":          `feedbackd-agent@web.service`,
		"web-frontend": `feedbackd-agent@web\x2dfrontend.service`, // %I gives back "web-frontend"
		"a.b_c":        `feedbackd-agent@a.b_c.service`,
	} {
		if got := UnitFor(name); got != want {
			t.Errorf("UnitFor(%q) = %q, want %q", name, got, want)
		}
		if back, ok := InstanceOf(want); !ok || back != name {
			t.Errorf("InstanceOf(%q) = %q, %v; want %q", want, back, ok, name)
		}
	}
	for _, u := range []string{"feedbackd-master.service", "feedbackd-agent@.service", "feedbackd-agent@web.socket", "feedbackd-agent-sync.service"} {
		if n, ok := InstanceOf(u); ok {
			t.Errorf("InstanceOf(%q) = %q, want not an instance", u, n)
		}
	}
}
