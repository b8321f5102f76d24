package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExampleLoadsAsDefaults(t *testing.T) {
	got, err := Load("../../testdata/config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Users.Allow) == 0 {
		got.Users.Allow = nil // allow = [] in the file
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("example config = %+v\nwant the defaults %+v", got, want)
	}
}

func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../testdata/config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range tomlKeys(reflect.TypeOf(Config{}), "") {
		section, name, _ := strings.Cut(key, ".")
		idx := strings.Index(string(data), "["+section+"]")
		if idx < 0 || !strings.Contains(string(data[idx:]), "\n"+name+" = ") {
			t.Errorf("key %s is not in testdata/config.example.toml", key)
		}
	}
}

func tomlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		if f.Type.Kind() == reflect.Struct && prefix == "" {
			keys = append(keys, tomlKeys(f.Type, tag+".")...)
			continue
		}
		keys = append(keys, prefix+tag)
	}
	return keys
}

// A file someone named that is not there is an error, never the defaults
// (which listen on 0.0.0.0:3000); the default path alone may be missing.
func TestMissingNamedFileIsAnError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.toml")
	_, err := Load(missing)
	if !errors.Is(err, ErrNoConfig) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(%s) error = %v, want ErrNoConfig naming the file", missing, err)
	}
}

func TestMissingDefaultGivesDefaults(t *testing.T) {
	if _, err := os.Stat(DefaultPath); err == nil {
		t.Skipf("%s exists on this machine", DefaultPath)
	}
	got, err := Load(DefaultPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Load(missing default) = %+v, want defaults", got)
	}
}

// An unknown key's error names its line and the key it probably means.
func TestUnknownKeyNamesLineAndNearestKey(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"typo", "# c\n[server]\nlisten = \"127.0.0.1:1\"\n\nlisen = \"x\"\n", "bad.toml:5: unknown key server.lisen (did you mean server.listen?)"},
		{"dotted", "server.state_dri = \"/x\"\n", "bad.toml:1: unknown key server.state_dri (did you mean server.state_dir?)"},
		{"section", "[users]\nmin_uid = 5\n[sever]\nlisten = \"x\"\n", "bad.toml:3: unknown key sever (did you mean server?)"},
		{"far off", "[local]\n\"weird key\" = 1\n", "bad.toml:2: unknown key local.weird key (see testdata/config.example.toml"},
		{"no section", "[backend]\nmode = \"local\"\nflavour = 1\n", "bad.toml:3: unknown key backend.flavour (see"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			err := Parse("bad.toml", tc.text, &cfg)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error = %v\nwant it to start %q", err, tc.want)
			}
		})
	}
}

func TestValues(t *testing.T) {
	var cfg = Default()
	err := Parse("x.toml", `
[server]
listen = "127.0.0.1:9"
max_body_bytes = 1024
max_header_bytes = "2k"
agent_timeout = "1m30s"
[backend]
mode = "auto"
[users]
allow = ["alice"]
min_uid = 500
[container]
memory = "2G"
`, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"listen", cfg.Server.Listen, "127.0.0.1:9"},
		{"max_body_bytes", cfg.Server.MaxBodyBytes, ByteSize(1024)},
		{"max_header_bytes", cfg.Server.MaxHeaderBytes, ByteSize(2048)},
		{"agent_timeout", cfg.Server.AgentTimeout.Duration, 90 * time.Second},
		{"mode", cfg.Backend.Mode, "auto"},
		{"allow", cfg.Users.Allow, []string{"alice"}},
		{"min_uid", cfg.Users.MinUID, uint32(500)},
		{"memory", cfg.Container.Memory, ByteSize(2 << 30)},
		{"untouched default", cfg.Local.SocketDir, "/run/octo"},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestMistakesNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string // substrings of the error
	}{
		{"unknown key", "[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n", []string{"bad.toml", "unknown key server.lisen"}},
		{"unknown section", "[sever]\nlisten = \"x\"\n", []string{"unknown key sever"}},
		{"syntax", "[server]\nlisten = \n", []string{"bad.toml:2"}},
		{"wrong type", "[server]\n\nlisten = 3000\n", []string{"bad.toml: line 3", "server.listen"}},
		{"bad duration", "[local]\nconnect_timeout = \"5 parsecs\"\n", []string{"bad.toml:2", "local.connect_timeout", "invalid duration"}},
		{"unitless duration", "[server]\nagent_timeout = 10\n", []string{"server.agent_timeout"}},
		{"bad size", "[server]\nmax_body_bytes = \"lots\"\n", []string{"server.max_body_bytes", "invalid size"}},
		{"bad mode", "[backend]\nmode = \"cloud\"\n", []string{"key backend.mode", "\"cloud\""}},
		{"bad listen", "[server]\nlisten = \"3000\"\n", []string{"key server.listen"}},
		{"relative state dir", "[server]\nstate_dir = \"state\"\n", []string{"key server.state_dir", "absolute"}},
		{"zero timeout", "[server]\nagent_timeout = \"0s\"\n", []string{"key server.agent_timeout"}},
		{"drain window over shutdown", "[server]\nshutdown_timeout = \"2s\"\ndrain_window = \"3s\"\n", []string{"key server.drain_window", "shutdown_timeout"}},
		{"negative drain window", "[server]\ndrain_window = \"-1s\"\n", []string{"key server.drain_window"}},
		{"requests below streams", "[server]\nmax_requests_per_user = 8\nmax_streams_per_user = 16\n", []string{"key server.max_requests_per_user", "max_streams_per_user"}},
		{"zero write stall timeout", "[server]\nwrite_stall_timeout = \"0s\"\n", []string{"key server.write_stall_timeout"}},
		{"tls cert without key", "[server]\ntls_cert = \"/etc/octo/tls.crt\"\n", []string{"key server.tls_cert", "tls_key"}},
		{"tls key a relative path", "[server]\ntls_cert = \"tls.crt\"\ntls_key = \"keys/tls.key\"\n", []string{"key server.tls_key", "credential"}},
		{"zero streams", "[server]\nmax_streams_per_user = 0\n", []string{"key server.max_streams_per_user"}},
		{"bad user", "[users]\nallow = [\"a b\"]\n", []string{"key users.allow"}},
		{"negative uid", "[users]\nmin_uid = -1\n", []string{"users.min_uid"}},
		{"container without image", "[backend]\nmode = \"container\"\n[container]\nimage = \"\"\n", []string{"key container.image"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			err := Parse("bad.toml", tc.text, &cfg)
			if err == nil {
				t.Fatalf("Parse(%q) = nil error, want one naming %q", tc.text, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadUnreadable(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "read config") {
		t.Errorf("Load(directory) error = %v, want a read error", err)
	}
}
