package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"
)

// nginxBinary returns the nginx to test with: $OIDCRP_NGINX, or nginx on
// PATH or in /usr/sbin. Without one the test is skipped, or fails under CI.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("OIDCRP_NGINX"); p != "" {
		return p
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	const msg = "nginx is not installed: run ./scripts/test.sh, which installs it (scripts/nginx.sh), or set OIDCRP_NGINX"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// nginxConf is oauth2-proxy's documented auth_request setup: the proxy's
// /oauth2/ paths pass through, every other request is checked with
// /oauth2/auth, a 401 starts a sign-in, and the identity from the 202 goes
// to the upstream (a proxied application at /, static files at /files/).
var nginxConf = template.Must(template.New("nginx").Parse(`
worker_processes 1;
pid {{.Dir}}/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path {{.Dir}}/body;
  proxy_temp_path {{.Dir}}/proxy;
  fastcgi_temp_path {{.Dir}}/fastcgi;
  uwsgi_temp_path {{.Dir}}/uwsgi;
  scgi_temp_path {{.Dir}}/scgi;
  server {
    listen {{.Listen}};
    location /oauth2/ {
      proxy_pass http://{{.Proxy}};
      proxy_set_header Host $http_host;
      proxy_set_header X-Real-IP $remote_addr;
    }
    location = /oauth2/auth {
      proxy_pass http://{{.Proxy}};
      proxy_set_header Host $http_host;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header Content-Length "";
      proxy_pass_request_body off;
    }
    location / {
      auth_request /oauth2/auth;
      error_page 401 = /oauth2/start?rd=$request_uri;
      auth_request_set $user $upstream_http_x_auth_request_user;
      auth_request_set $email $upstream_http_x_auth_request_email;
      auth_request_set $groups $upstream_http_x_auth_request_groups;
      proxy_set_header X-User $user;
      proxy_set_header X-Email $email;
      proxy_set_header X-Groups $groups;
      proxy_pass {{.Upstream}};
    }
    location /files/ {
      auth_request /oauth2/auth;
      error_page 401 = /oauth2/start?rd=$request_uri;
      alias {{.Dir}}/files/;
    }
  }
}
`))

// TestNginxAuthRequest runs a real nginx in front of an upstream with
// oidcrp-proxy answering its auth_request subrequests: a browser signs in
// through nginx, the upstream receives the identity nginx took from
// /oauth2/auth, static files are served only after sign-in.
func TestNginxAuthRequest(t *testing.T) {
	nginx := nginxBinary(t)
	dir := t.TempDir()
	// nginx's workers run as another user (nobody) when started as root.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi", "files"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "files", "hello.txt"), []byte("static hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t)
	listen := freeAddr(t)
	public := "http://" + listen
	p := startProxy(t, "-dev", "-upstream", up.URL, "-public-url", public)

	var conf strings.Builder
	if err := nginxConf.Execute(&conf, map[string]string{
		"Dir": dir, "Listen": listen, "Proxy": strings.TrimPrefix(p.base, "http://"), "Upstream": up.URL,
	}); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	cmd := exec.Command(nginx, "-e", "stderr", "-p", dir, "-c", confPath, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt) // fast shutdown
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("nginx log:\n%s", log)
		}
	})
	waitFor(t, public+"/oauth2/auth", done, log)

	b := newBrowser(t)
	if _, body := newBrowser(t).get(public+"/files/hello.txt", "text/plain"); strings.Contains(body, "static hello") {
		t.Fatal("nginx served a protected file without a session")
	}
	resp, body := b.signIn(public + "/app/page?x=1")
	e := decodeEcho(t, resp, body)
	if e.URI != "/app/page?x=1" || e.Headers.Get("X-User") != "demo-user" || e.Headers.Get("X-Email") != "demo@example.test" || e.Headers.Get("X-Groups") != "staff" {
		t.Errorf("through nginx the upstream got %s with X-User %q, X-Email %q, X-Groups %q",
			e.URI, e.Headers.Get("X-User"), e.Headers.Get("X-Email"), e.Headers.Get("X-Groups"))
	}
	if resp, body := b.get(public+"/files/hello.txt", "text/plain"); resp.StatusCode != 200 || body != "static hello\n" {
		t.Errorf("static file after sign-in: %d %q", resp.StatusCode, body)
	}
	resp, body = b.get(public+"/oauth2/auth", "*/*")
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Auth-Request-User") != "demo-user" {
		t.Errorf("/oauth2/auth through nginx: %d %v %s", resp.StatusCode, resp.Header, body)
	}
}

// waitFor polls u until it answers at all, or fails the test when the
// process behind it has exited or does not answer within 20 seconds.
func waitFor(t *testing.T, u string, exited <-chan struct{}, log fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("exited before answering %s:\n%s", u, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer: %v\n%s", u, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
