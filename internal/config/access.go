package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"

	"github.com/lvs-feedbackd/feedbackd/internal/value"
)

// parseAllow reads `allow`: addresses and CIDR networks separated by
// commas or spaces, or the single word "any". nil means any address.
func parseAllow(s string) ([]netip.Prefix, error) { return value.Networks(s) }

// Allowed reports whether an agent at addr may connect: true for any
// address when allow is nil (not configured).
func Allowed(allow []netip.Prefix, addr netip.Addr) bool {
	if allow == nil {
		return true
	}
	addr = addr.Unmap()
	for _, p := range allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// parseBool reads yes/no switches (value.Bool).
func parseBool(s string) (bool, error) { return value.Bool(s) }

// readSecret reads a shared secret file: its contents without trailing
// white space (an editor's final newline is not part of the secret). The
// file is read when the configuration is, so that -t checks it and a
// reload with an unreadable secret is refused like any other error.
//
// warn is set when other users can read the file: the secret is only as
// good as its file's mode.
//
// A relative path names a systemd credential (LoadCredential=) and is read
// from $CREDENTIALS_DIRECTORY, which systemd sets for the service. That is
// what makes one agent.conf line serve every feedbackd-agent@ instance,
// each of which has its own credentials directory. Where the variable is
// unset (-t from a shell, feedbackd-agent-sync checking a file) the secret
// cannot be read: it is left nil with a warning, and the daemons refuse to
// start that way (see SecretMissing).
func readSecret(path string) (secret []byte, warn string, err error) {
	if path == "" {
		return nil, "", fmt.Errorf("empty path")
	}
	credential := !filepath.IsAbs(path)
	if credential {
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			return nil, fmt.Sprintf("%q names a systemd credential, which cannot be read here ($CREDENTIALS_DIRECTORY is not set); not checked", path), nil
		}
		path = filepath.Join(dir, path)
	}
	data, mode, err := readSmallFile(path, maxSecretFile)
	if err != nil && credential && errors.Is(err, fs.ErrPermission) {
		// systemd before 254 (Debian 12 has 252) does not let a
		// DynamicUser= unit's later commands read its credentials
		// (systemd#24291): ExecReload='s -t lands here. The check cannot
		// be made in this process, so it is a warning: with no secret
		// read, the master itself (SecretMissing) refuses to start or to
		// reload, and it can read the credential.
		return nil, fmt.Sprintf("credential %s cannot be read by this process (%v; systemd before 254 denies it to ExecReload= of a DynamicUser= unit); not checked here, the running master checks it when it reloads", path, err), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("cannot read secret file %s: %v", path, err)
	}
	secret = bytes.TrimRight(data, " \t\r\n")
	if len(secret) < MinSecretLen {
		return nil, "", fmt.Errorf("secret in %s is %d bytes; at least %d are needed (e.g. head -c 32 /dev/urandom | base64)", path, len(secret), MinSecretLen)
	}
	if mode.Perm()&0o004 != 0 {
		warn = fmt.Sprintf("secret file %s is readable by every user (mode %v); make it 0600 or 0640", path, mode.Perm())
	}
	return secret, warn, nil
}

// maxSecretFile bounds a secret file: a key is tens of bytes, and a path
// typed wrong (a log file, a disk image) must not be read whole.
const maxSecretFile = 4096

// readSmallFile reads a regular file of at most limit bytes. Anything else
// is refused before it is read: "secret-file = /dev/zero" or a FIFO would
// otherwise hang the configuration check for ever. O_NONBLOCK keeps the
// open itself from waiting for a FIFO's writer, and a read of a /proc file
// that would wait (kmsg) from blocking; on a regular file it changes
// nothing.
func readSmallFile(path string, limit int64) ([]byte, fs.FileMode, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if pe, ok := err.(*fs.PathError); ok {
			err = pe.Err
		}
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
	}
	if fi.Size() > limit {
		return nil, 0, fmt.Errorf("%d bytes, more than the %d a secret may have", fi.Size(), limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(data)) > limit {
		err = fmt.Errorf("more than %d bytes", limit)
	}
	return data, fi.Mode(), err
}

// SecretMissing returns an error when secret-file is set but its secret
// could not be read (a credential outside its service): a daemon must not
// start without the secret it was told to use.
func SecretMissing(file string, secret []byte) error {
	if file == "" || secret != nil {
		return nil
	}
	return fmt.Errorf("secret-file %q: the credential could not be read (no $CREDENTIALS_DIRECTORY, or no permission); a relative secret-file names a credential given with LoadCredential=", file)
}
