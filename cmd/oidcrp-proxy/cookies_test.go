package main

import "testing"

// TestIsSessionCookie checks which cookie names the upstream never gets:
// the library's, in their https (__Host-) and per-tenant spellings, and
// none of the application's.
func TestIsSessionCookie(t *testing.T) {
	for name, want := range map[string]bool{
		"oidcrp":                           true,
		"__Host-oidcrp":                    true,
		"oidcrp_login_0123456789abcdef":    true,
		"__Host-oidcrp_login_0123456789ab": true,
		"oidcrp_e737f8ca5c6b":              true,
		"__Host-oidcrp_e737f8ca5c6b":       true,
		"oidcrp_prefs":                     false,
		"oidcrp_E737F8CA5C6B":              false,
		"session":                          false,
		"__Host-session":                   false,
		"xoidcrp":                          false,
	} {
		if got := isSessionCookie(name); got != want {
			t.Errorf("isSessionCookie(%q) = %v, want %v", name, got, want)
		}
	}
}
