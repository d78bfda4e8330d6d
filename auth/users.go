package auth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Users maps usernames to bcrypt password hashes.
type Users map[string][]byte

// bcryptCost is the cost of new hashes: about 50 ms on current hardware,
// slow enough against guessing, fast enough for CONNECT bursts.
const bcryptCost = 10

// HashPassword returns a bcrypt hash of password.
func HashPassword(password string) (string, error) { return hashPassword(password, bcryptCost) }

func hashPassword(password string, cost int) (string, error) {
	if password == "" {
		return "", errors.New("empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	return string(h), err
}

// LoadUsers reads a users file: one "username:bcrypt-hash" per line; blank
// lines and lines starting with '#' are ignored. Errors name the line.
func LoadUsers(path string) (Users, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	return ParseUsers(b, path)
}

// ParseUsers parses the users file format.
func ParseUsers(b []byte, name string) (Users, error) {
	users := Users{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		user, hash, ok := strings.Cut(text, ":")
		if !ok || user == "" || hash == "" {
			return nil, fmt.Errorf("%s:%d: want username:bcrypt-hash", name, line)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("%s:%d: user %q: not a bcrypt hash (make one with `mqstream user hash`)", name, line, user)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("%s:%d: user %q appears twice", name, line, user)
		}
		users[user] = []byte(hash)
	}
	return users, sc.Err()
}

// Check reports whether password is user's.
func (u Users) Check(user string, password []byte) bool {
	hash, ok := u[user]
	if !ok {
		// Spend the same time as a real check, so timing does not tell
		// which usernames exist.
		_ = bcrypt.CompareHashAndPassword(dummyHash, password)
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, password) == nil
}

// dummyHash is compared against for unknown users.
var dummyHash = []byte("$2a$10$KK0qKaz27VFONC3ErmotFuI1tiYYX2o.ceLZqZzpG.clx3msasEGq")

// SetUser adds or replaces a user in a users file, creating it if needed
// (mode 0600), and keeps other lines as they are.
func SetUser(path, user, password string) error { return setUser(path, user, password, bcryptCost) }

func setUser(path, user, password string, cost int) error {
	if user == "" || strings.ContainsAny(user, ":\n\r") {
		return fmt.Errorf("username %q: must be non-empty without ':' or newlines", user)
	}
	hash, err := hashPassword(password, cost)
	if err != nil {
		return err
	}
	var lines []string
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	replaced := false
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if l == "" && len(lines) == 0 {
			continue
		}
		if name, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && name == user && !strings.HasPrefix(strings.TrimSpace(l), "#") {
			if !replaced {
				lines = append(lines, user+":"+hash)
				replaced = true
			}
			continue
		}
		lines = append(lines, l)
	}
	if !replaced {
		lines = append(lines, user+":"+hash)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
