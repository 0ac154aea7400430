#!/bin/sh
# Entry point of the Chorus images. Secrets arrive as files (compose secrets, Kubernetes secret
# volumes): for each variable below, VAR_FILE=/path sets VAR to that file's content, so tokens never
# sit in the compose file, the pod spec or `docker inspect`. Then runs `chorus "$@"`.
set -eu
for var in CHORUS_CLIENT_TOKEN CHORUS_WORKER_TOKEN CHORUS_HTTP_TOKEN CHORUS_TOKEN NATS_TOKEN NATS_PASSWORD; do
  eval "file=\${${var}_FILE:-}"
  if [ -n "$file" ]; then
    if [ ! -r "$file" ]; then
      echo "chorus entrypoint: ${var}_FILE=$file is not a readable file" >&2
      exit 64
    fi
    value=$(cat "$file")
    export "$var=$value"
    unset "${var}_FILE"
  fi
done
exec node /app/bin/chorus.mjs "$@"
