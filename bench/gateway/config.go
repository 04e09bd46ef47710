package main

import (
	"fmt"

	"github.com/thon-dev/thon/bench/internal/benchkit"
)

// wrkScript makes wrk POST body as JSON.
func wrkScript(body string) string {
	return fmt.Sprintf("wrk.method = \"POST\"\nwrk.body = [[%s]]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n", body)
}

// thonCaddyfile is thon with the gateway on a loopback site and Lemonade
// at upstream.
func thonCaddyfile(adminPort, site int, dataDir, upstream, key, gatewayBlock string) string {
	global := fmt.Sprintf(`	skip_install_trust
	thon {
		data_dir %s
		lemonade {
			url http://%s
			api_key %s
			health_interval 1h
		}
		%s
	}
`, dataDir, upstream, key, gatewayBlock)
	return benchkit.Caddyfile(adminPort, global, fmt.Sprintf(`http://:%d {
	bind 127.0.0.1
	thon_gateway
	respond 404
}
`, site))
}

// caddyCaddyfile is plain Caddy: reverse_proxy to the upstream with its
// key put in place of the client's, nothing else.
func caddyCaddyfile(adminPort, site int, upstream, key string) string {
	return benchkit.Caddyfile(adminPort, "", fmt.Sprintf(`http://:%d {
	bind 127.0.0.1
	reverse_proxy %s {
		header_up Authorization "Bearer %s"
	}
}
`, site, upstream, key))
}

// nginxHTTP is the http block of nginx.conf past its common head: an
// upstream with keepalive connections (nginx at its best), the upstream's
// key put in, and no response buffering, as an LLM proxy needs for
// streams.
func nginxHTTP(port int, upstream, key string) string {
	return fmt.Sprintf(`    upstream lemonade {
        server %s;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:%d;
        location /v1/ {
            proxy_pass http://lemonade;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer %s";
            proxy_buffering off;
        }
    }
`, upstream, port, key)
}
