#!/bin/sh
# Stand-in for /lambda-entrypoint.sh of public.ecr.aws/lambda/python:3.12 (same contract):
# exactly one argument, the handler ("module.function"); without AWS_LAMBDA_RUNTIME_API
# (i.e. outside Lambda) the runtime is started under the Runtime Interface Emulator.
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"

RUNTIME_ENTRYPOINT=/var/runtime/bootstrap
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  exec /usr/local/bin/aws-lambda-rie "$RUNTIME_ENTRYPOINT"
else
  exec "$RUNTIME_ENTRYPOINT"
fi
