#!/usr/bin/env bash
# Makes the development certificates in this folder: a private CA and a leaf for
# localhost, *.localhost and the demo/test host names. FOR DEVELOPMENT ONLY: the keys are
# public (they are in the repository). Production: point [tls] cert/key at your own files.
set -euo pipefail
cd "$(dirname "$0")"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=gatehouse development CA (do not trust)" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout dev-ca.key -out dev-ca.crt
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=localhost" -keyout localhost.key -out localhost.csr
openssl x509 -req -in localhost.csr -CA dev-ca.crt -CAkey dev-ca.key -CAcreateserial -days 3650 \
  -extfile <(printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" \
    "subjectAltName=DNS:localhost,DNS:*.localhost,DNS:auth.localhost,DNS:app.localhost,DNS:wiki.localhost,DNS:api.localhost,DNS:other.localhost,IP:127.0.0.1,IP:::1") \
  -out localhost.crt
cat dev-ca.crt >> localhost.crt   # send the chain
# The CA key is thrown away: nobody can mint more certificates under this CA.
rm -f localhost.csr dev-ca.srl dev-ca.key
