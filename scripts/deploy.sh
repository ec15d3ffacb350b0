#!/usr/bin/env bash
# Deploy the embedding model to AWS Lambda (container image + Function URL) in one command:
# create the ECR repository, build and push the image, then point the function at exactly the
# pushed digest. --bulk adds the bulk function (the bulk image), --batch the AWS Batch queue and
# worker (the worker image). Terraform lives in terraform/; this script only drives it.
#
#   scripts/deploy.sh [deploy|plan|destroy] [--dry-run] [--region R] [--arch x86_64|arm64]
#                     [--precision fp32|int8] [--models LIST] [--engine docker|podman] [--tag T] [--bulk]
#                     [--batch] [--var name=value]...
#
# Run with --help for details.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tf_dir="terraform"
model_dir="models/all-MiniLM-L6-v2"
local_image="embedding-lambda"
# The bulk and Batch worker images go to the same repository under fixed tags; like the query image,
# what runs is pinned to the digest just pushed, so a moved tag never changes it.
bulk_tag="bulk"
batch_tag="batch"
# Terraform resource addresses of the repository stage (see terraform/ecr.tf).
ecr_targets=(aws_ecr_repository.this aws_ecr_lifecycle_policy.this)
total_steps=6

usage() {
  cat <<EOF
Usage: scripts/deploy.sh [deploy|plan|destroy] [options]

Actions:
  deploy    (default) create the ECR repository, build and push the Lambda image, then create
            or update the function pinned to the pushed image digest; prints the URL and a curl.
  plan      terraform plan against the image that is deployed now (nothing is changed).
  destroy   terraform destroy: function, URL, log group, role and the repository with its images
            (and the bulk function and the Batch resources, when they exist).

Options:
  --dry-run               print every command (prefixed "+ ") without running anything; needs
                          no tools and no AWS credentials.
  --region R              AWS region (default: \$AWS_REGION, \$AWS_DEFAULT_REGION or us-east-1).
  --arch x86_64|arm64     Lambda architecture; the image is built for linux/amd64 or linux/arm64
                          (default: x86_64).
  --precision fp32|int8   model precision (default: fp32, vectors equal sentence-transformers);
                          int8 runs the quantised economy file, about half the CPU time per
                          passage. Passed as the image's --build-arg PRECISION (only that ONNX
                          file is baked in) and as the Terraform variable precision.
  --models LIST           several models in the one function (MODELS=, docs/lambda.md): their
                          prepared folders under models/, comma-separated, each FOLDER or
                          ID=FOLDER, e.g. all-MiniLM-L6-v2,cross-encoder/ms-marco-MiniLM-L6-v2=ms-marco-MiniLM-L6-v2.
                          Passed as the image's --build-arg MODELS (those folders are baked in)
                          and as the Terraform variable models. Default: the one embedder.
  --engine docker|podman  container engine (default: docker if installed, else podman).
  --tag T                 image tag to push (default: latest). The function is pinned to the
                          digest, so re-using a tag is safe.
  --bulk                  also build and push the bulk image (Dockerfile.lambda --build-arg BULK=1,
                          tag "$bulk_tag") and deploy the bulk function <function_name>-bulk on it,
                          for embed-corpus --target lambda://<function_name>-bulk.
  --batch                 also build and push the AWS Batch worker image (Dockerfile.lambda
                          --target batch, linux/amd64 whatever --arch: Fargate Spot runs x86_64
                          only; tag "$batch_tag") and deploy terraform/batch.tf on it; prints the
                          queue and job definition for embed-corpus --target batch://QUEUE.
                          Pass it on every deploy: without it the next deploy removes the Batch
                          resources (as a deploy without --bulk removes the bulk function).
                          Name the S3 folders the workers may use with
                          --var 'batch_input_prefixes=["s3://BUCKET/corpus/"]' and
                          --var 'batch_output_prefixes=["s3://BUCKET/vectors/"]'.
  --var name=value        extra Terraform variable (repeatable), e.g. --var memory_size=3008
                          or --var function_url_auth_type=NONE. TF_VAR_* variables work too.
  -h, --help              show this help.

Needs: terraform (>= 1.5), the AWS CLI v2, docker or podman, AWS credentials, and the prepared
model in $model_dir/onnx/ (run \`make setup\`).
EOF
}

die() {
  # die MESSAGE [EXIT_CODE]: print an error that says what to do, then stop.
  echo "error: $1" >&2
  exit "${2:-1}"
}

usage_error() {
  echo "error: $1" >&2
  echo "Run 'scripts/deploy.sh --help' for usage." >&2
  exit 2
}

# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------
action="deploy"
action_set=0
dry_run=0
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
arch="x86_64"
precision="fp32"
engine=""
tag="latest"
bulk=0
batch=0
extra_vars=()
models=""

need_value() {
  # need_value OPTION COUNT_OF_REMAINING_ARGS NEXT_ARG
  if [ "$2" -lt 2 ] || [[ "$3" == -* ]]; then
    usage_error "$1 needs a value"
  fi
}

while [ $# -gt 0 ]; do
  case "$1" in
    deploy | plan | destroy)
      if [ "$action_set" -eq 1 ]; then
        usage_error "only one action (deploy, plan or destroy) may be given; got '$action' and '$1'"
      fi
      action="$1"
      action_set=1
      ;;
    --dry-run) dry_run=1 ;;
    --bulk) bulk=1 ;;
    --batch) batch=1 ;;
    --region) need_value "$1" $# "${2:-}"; region="$2"; shift ;;
    --region=*) region="${1#*=}" ;;
    --arch) need_value "$1" $# "${2:-}"; arch="$2"; shift ;;
    --arch=*) arch="${1#*=}" ;;
    --precision) need_value "$1" $# "${2:-}"; precision="$2"; shift ;;
    --precision=*) precision="${1#*=}" ;;
    --models) need_value "$1" $# "${2:-}"; models="$2"; shift ;;
    --models=*) models="${1#*=}" ;;
    --engine) need_value "$1" $# "${2:-}"; engine="$2"; shift ;;
    --engine=*) engine="${1#*=}" ;;
    --tag) need_value "$1" $# "${2:-}"; tag="$2"; shift ;;
    --tag=*) tag="${1#*=}" ;;
    --var) need_value "$1" $# "${2:-}"; extra_vars+=("$2"); shift ;;
    --var=*) extra_vars+=("${1#*=}") ;;
    -h | --help) usage; exit 0 ;;
    -*) usage_error "unknown option '$1'" ;;
    *) usage_error "unknown action '$1' (expected deploy, plan or destroy)" ;;
  esac
  shift
done

case "$arch" in
  x86_64) platform="linux/amd64" ;;
  arm64) platform="linux/arm64" ;;
  *) usage_error "--arch must be x86_64 or arm64, got '$arch'" ;;
esac

case "$precision" in
  fp32) onnx_file="onnx/model.onnx" ;;
  int8) onnx_file="onnx/model_int8.onnx" ;;
  *) usage_error "--precision must be fp32 or int8, got '$precision'" ;;
esac

# --models: the folders to bake in (build arg, space-separated) and Terraform's list.
model_folders="all-MiniLM-L6-v2"
models_var=""
if [ -n "$models" ]; then
  model_folders=""
  items=()
  IFS=',' read -r -a entries <<<"$models"
  for entry in "${entries[@]}"; do
    if ! [[ "$entry" =~ ^([^=,\"]+=)?[A-Za-z0-9][A-Za-z0-9._-]*$ ]]; then
      usage_error "--models takes FOLDER or ID=FOLDER entries, comma-separated (a folder name under models/), got '$entry'"
    fi
    model_folders="${model_folders:+$model_folders }${entry##*=}"
    items+=("\"$entry\"")
  done
  models_var="models=[$(IFS=,; echo "${items[*]}")]"
fi

if ! [[ "$region" =~ ^[a-z]{2,4}(-[a-z]+)+-[0-9]+$ ]]; then
  usage_error "--region must be an AWS region name such as eu-west-1, got '$region'"
fi

if ! [[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
  usage_error "--tag must be a valid image tag (letters, digits, '_', '.', '-'; max 128), got '$tag'"
fi

for kv in "${extra_vars[@]+"${extra_vars[@]}"}"; do
  if ! [[ "$kv" =~ ^[A-Za-z_][A-Za-z0-9_-]*=.*$ ]]; then
    usage_error "--var expects name=value, got '$kv'"
  fi
  case "${kv%%=*}" in
    region | architecture | precision | image_tag | image_digest | models)
      usage_error "--var ${kv%%=*}=... is set by this script; use --region, --arch, --precision, --models or --tag instead"
      ;;
    bulk_function_enabled | bulk_image_tag | bulk_image_digest)
      usage_error "--var ${kv%%=*}=... is set by this script; use --bulk instead"
      ;;
    enable_batch | batch_image_tag | batch_image_digest)
      usage_error "--var ${kv%%=*}=... is set by this script; use --batch instead"
      ;;
  esac
done

if [ -z "$engine" ]; then
  if command -v docker >/dev/null 2>&1 || ! command -v podman >/dev/null 2>&1; then
    engine="docker"
  else
    engine="podman"
  fi
fi
case "$engine" in
  docker | podman) ;;
  *) usage_error "--engine must be docker or podman, got '$engine'" ;;
esac

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
step_no=0
step() {
  step_no=$((step_no + 1))
  echo "==> step ${step_no}/${total_steps}: $*"
}

note() {
  echo "    $*"
}

quote_args() {
  # Print the arguments as one shell-ready line: plain words as they are, others single-quoted.
  local out="" arg
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
      out+=" $arg"
    else
      out+=" '${arg//\'/\'\\\'\'}'"
    fi
  done
  printf '%s\n' "${out# }"
}

trace() {
  printf '+ %s\n' "$(quote_args "$@")"
}

run() {
  # run CMD ARGS...: show the command, then run it (unless --dry-run).
  trace "$@"
  if [ "$dry_run" -eq 0 ]; then
    "$@"
  fi
}

capture() {
  # capture VAR DRY_RUN_VALUE CMD ARGS...: show the command, run it and store its stdout in
  # VAR; under --dry-run store DRY_RUN_VALUE instead.
  local __var="$1" __dry="$2" __out
  shift 2
  trace "$@"
  if [ "$dry_run" -eq 1 ]; then
    __out="$__dry"
  else
    __out="$("$@")"
  fi
  printf -v "$__var" '%s' "$__out"
}

tf() {
  run terraform "-chdir=$tf_dir" "$@"
}

tf_vars=(-var "region=$region" -var "architecture=$arch" -var "precision=$precision" -var "image_tag=$tag")
if [ "$bulk" -eq 1 ]; then
  tf_vars+=(-var "bulk_function_enabled=true")
fi
if [ "$batch" -eq 1 ]; then
  tf_vars+=(-var "enable_batch=true")
fi
if [ -n "$models_var" ]; then
  tf_vars+=(-var "$models_var")
fi
for kv in "${extra_vars[@]+"${extra_vars[@]}"}"; do
  tf_vars+=(-var "$kv")
done

require_tool() {
  # require_tool NAME HOW_TO_INSTALL
  if ! command -v "$1" >/dev/null 2>&1; then
    die "'$1' is not installed or not on PATH. $2"
  fi
}

check_tools() {
  # check_tools WANT_ENGINE(0|1)
  if [ "$dry_run" -eq 1 ]; then
    note "(dry run: not checking tools or AWS credentials)"
    trace aws sts get-caller-identity --region "$region" --query Arn --output text
    return
  fi
  require_tool terraform "Install Terraform >= 1.5: https://developer.hashicorp.com/terraform/install"
  require_tool aws "Install the AWS CLI v2: https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"
  if [ "$1" -eq 1 ]; then
    require_tool "$engine" "Install Docker (https://docs.docker.com/engine/install/) or Podman, or choose the other one with --engine docker|podman."
    if ! "$engine" info >/dev/null 2>&1; then
      die "'$engine info' failed: the $engine daemon is not running or not reachable by this user. Start it (e.g. 'sudo systemctl start docker') or use --engine."
    fi
  fi
  trace aws sts get-caller-identity --region "$region" --query Arn --output text
  local identity
  if ! identity="$(aws sts get-caller-identity --region "$region" --query Arn --output text 2>&1)"; then
    die "no usable AWS credentials ('aws sts get-caller-identity' failed: ${identity}). Run 'aws configure', or 'aws sso login --profile NAME' and export AWS_PROFILE=NAME, or export AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN)."
  fi
  note "AWS identity: $identity"
}

check_model() {
  local folder file
  for folder in $model_folders; do
    file="models/$folder/$onnx_file"
    if [ -f "$file" ]; then
      continue
    fi
    if [ "$dry_run" -eq 1 ]; then
      note "warning: $file is missing; a real deploy stops here (run 'make setup' first)."
      continue
    fi
    die "$file is missing: the Lambda image bakes the prepared ONNX model in. Run 'make setup' first."
  done
}

cd "$root"

# Filled in by capture (from Terraform outputs and ECR) as the deploy goes.
repo_url=""
digest=""
bulk_digest=""
batch_digest=""
function_url=""
curl_example=""
bulk_function=""
batch_queue=""
batch_definition=""

mode=""
if [ "$dry_run" -eq 1 ]; then
  mode=" (dry run: commands are printed, not run)"
fi
extras=""
[ "$bulk" -eq 1 ] && extras+=" +bulk"
[ "$batch" -eq 1 ] && extras+=" +batch"
echo "Embedding model -> AWS Lambda$extras: action=$action region=$region arch=$arch ($platform) precision=$precision engine=$engine tag=$tag$mode"

# ---------------------------------------------------------------------------------------------
# destroy / plan
# ---------------------------------------------------------------------------------------------
if [ "$action" = "destroy" ]; then
  total_steps=3
  step "check tools and AWS credentials"
  check_tools 0
  step "terraform init"
  tf init -input=false
  step "terraform destroy (function, URL, log group, role, repository and its images)"
  tf destroy -input=false -auto-approve "${tf_vars[@]}"
  if [ "$dry_run" -eq 0 ]; then
    echo "Destroyed."
  fi
  exit 0
fi

if [ "$action" = "plan" ]; then
  total_steps=3
  step "check tools and AWS credentials"
  check_tools 0
  step "terraform init"
  tf init -input=false
  step "terraform plan against the deployed image"
  # Plan against the digest the function runs now, so the plan shows configuration changes only
  # (not a switch from repo@digest back to repo:tag). Nothing deployed yet: plan with the tag.
  plan_vars=("${tf_vars[@]}")
  deployed_image=""
  if [ "$dry_run" -eq 0 ]; then
    deployed_image="$(terraform "-chdir=$tf_dir" output -raw image_uri 2>/dev/null || true)"
  else
    trace terraform "-chdir=$tf_dir" output -raw image_uri
  fi
  if [[ "$deployed_image" == *@sha256:* ]]; then
    plan_vars+=(-var "image_digest=${deployed_image##*@}")
  fi
  # The same for the bulk and the Batch worker images, when asked for and deployed.
  for kind in bulk batch; do
    if [ "$kind" = bulk ] && [ "$bulk" -eq 0 ]; then continue; fi
    if [ "$kind" = batch ] && [ "$batch" -eq 0 ]; then continue; fi
    deployed_image=""
    if [ "$dry_run" -eq 0 ]; then
      deployed_image="$(terraform "-chdir=$tf_dir" output -raw "${kind}_image_uri" 2>/dev/null || true)"
    else
      trace terraform "-chdir=$tf_dir" output -raw "${kind}_image_uri"
    fi
    if [[ "$deployed_image" == *@sha256:* ]]; then
      plan_vars+=(-var "${kind}_image_digest=${deployed_image##*@}")
    fi
  done
  tf plan -input=false "${plan_vars[@]}"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# deploy
# ---------------------------------------------------------------------------------------------
step "check tools, AWS credentials and the prepared model"
check_model
check_tools 1

step "terraform init and create the ECR repository"
tf init -input=false
target_args=()
for target in "${ecr_targets[@]}"; do
  target_args+=("-target=$target")
done
tf apply -input=false -auto-approve "${target_args[@]}" "${tf_vars[@]}"
# Only for the --dry-run placeholders; a real run reads the names from the Terraform outputs.
repository_name="${TF_VAR_repository_name:-embedding_model}"
function_name="${TF_VAR_function_name:-embedding-model}"
for kv in "${extra_vars[@]+"${extra_vars[@]}"}"; do
  case "${kv%%=*}" in
    repository_name) repository_name="${kv#*=}" ;;
    function_name) function_name="${kv#*=}" ;;
  esac
done
capture repo_url "ACCOUNT_ID.dkr.ecr.${region}.amazonaws.com/${repository_name}" \
  terraform "-chdir=$tf_dir" output -raw repository_url
if [ -z "$repo_url" ] || [[ "$repo_url" != */* ]]; then
  die "could not read the repository URL from 'terraform output repository_url' (got '$repo_url')."
fi
registry="${repo_url%%/*}"
repo_name="${repo_url#*/}"
note "repository: $repo_url"

also_built=""
[ "$bulk" -eq 0 ] || also_built+=", the bulk image"
[ "$batch" -eq 0 ] || also_built+=", the Batch worker (linux/amd64)"
step "build the Lambda image for $platform ($precision)$also_built"
host_arch="$(uname -m)"
case "$host_arch" in
  aarch64 | arm64) host_platform="linux/arm64" ;;
  *) host_platform="linux/amd64" ;;
esac
if [ "$host_platform" != "$platform" ]; then
  note "note: building $platform on a $host_platform host needs QEMU emulation (binfmt_misc); if the build fails with 'exec format error', install it, e.g. 'docker run --privileged --rm tonistiigi/binfmt --install all'."
fi
provenance_args=()
if [ "$engine" = "docker" ]; then
  # BuildKit would otherwise wrap the image in an index with a provenance attestation, which
  # Lambda rejects ("image manifest ... media type ... is not supported").
  if [ "$dry_run" -eq 1 ] || docker buildx version >/dev/null 2>&1; then
    provenance_args+=(--provenance=false)
  fi
fi
model_args=()
if [ -n "$models" ]; then
  model_args+=(--build-arg "MODELS=$model_folders")
fi
run "$engine" build --platform "$platform" "${provenance_args[@]+"${provenance_args[@]}"}" -f Dockerfile.lambda \
  --build-arg "PRECISION=$precision" "${model_args[@]+"${model_args[@]}"}" -t "$local_image:$tag" .
if [ "$bulk" -eq 1 ]; then
  # The bulk function runs the query function's precision (one model file for corpus and queries).
  run "$engine" build --platform "$platform" "${provenance_args[@]+"${provenance_args[@]}"}" -f Dockerfile.lambda \
    --build-arg BULK=1 --build-arg "PRECISION=$precision" -t "$local_image:$bulk_tag" .
fi
if [ "$batch" -eq 1 ]; then
  # Fargate Spot runs x86_64 tasks only (terraform/batch.tf's runtimePlatform), whatever --arch.
  if [ "$host_platform" != linux/amd64 ]; then
    note "note: the Batch worker is built for linux/amd64 on a $host_platform host: this needs QEMU emulation (see above)."
  fi
  run "$engine" build --platform linux/amd64 "${provenance_args[@]+"${provenance_args[@]}"}" -f Dockerfile.lambda \
    --target batch --build-arg "PRECISION=$precision" -t "$local_image:$batch_tag" .
fi

step "log in to ECR and push the image$([ -z "$also_built" ] || echo "s")"
login_cmd=(aws ecr get-login-password --region "$region")
engine_login=("$engine" login --username AWS --password-stdin "$registry")
printf '+ %s | %s\n' "$(quote_args "${login_cmd[@]}")" "$(quote_args "${engine_login[@]}")"
if [ "$dry_run" -eq 0 ]; then
  "${login_cmd[@]}" | "${engine_login[@]}"
fi
push_tag() {
  run "$engine" tag "$local_image:$1" "$repo_url:$1"
  run "$engine" push "$repo_url:$1"
}
push_tag "$tag"
[ "$bulk" -eq 0 ] || push_tag "$bulk_tag"
[ "$batch" -eq 0 ] || push_tag "$batch_tag"

if [ -z "$also_built" ]; then
  step "pin the function to the pushed digest (terraform apply)"
else
  step "pin each function and job definition to its pushed digest (terraform apply)"
fi
pushed_digest() {
  # pushed_digest VAR TAG: the digest ECR holds for TAG (a placeholder under --dry-run).
  capture "$1" "sha256:DIGEST_OF_THE_PUSHED_IMAGE" \
    aws ecr describe-images --region "$region" --repository-name "$repo_name" \
    --image-ids "imageTag=$2" --query 'imageDetails[0].imageDigest' --output text
  if [ "$dry_run" -eq 0 ] && ! [[ "${!1}" =~ ^sha256:[0-9a-f]{64}$ ]]; then
    die "could not read the digest of $repo_url:$2 from ECR (got '${!1}'); check that the push succeeded."
  fi
  note "image: $repo_url@${!1} ($2)"
}
pushed_digest digest "$tag"
digest_vars=(-var "image_digest=$digest")
if [ "$bulk" -eq 1 ]; then
  pushed_digest bulk_digest "$bulk_tag"
  digest_vars+=(-var "bulk_image_digest=$bulk_digest")
fi
if [ "$batch" -eq 1 ]; then
  pushed_digest batch_digest "$batch_tag"
  digest_vars+=(-var "batch_image_digest=$batch_digest")
fi
tf apply -input=false -auto-approve "${tf_vars[@]}" "${digest_vars[@]}"

step "function URL and a curl to try$([ "$batch" -eq 0 ] || echo ", the Batch queue and job definition")"
capture function_url "https://URL_ID.lambda-url.${region}.on.aws/" \
  terraform "-chdir=$tf_dir" output -raw function_url
capture curl_example "curl ... ${function_url}" \
  terraform "-chdir=$tf_dir" output -raw curl_example
if [ "$bulk" -eq 1 ]; then
  capture bulk_function "${function_name}-bulk" terraform "-chdir=$tf_dir" output -raw bulk_function_name
fi
if [ "$batch" -eq 1 ]; then
  capture batch_queue "${function_name}-batch" terraform "-chdir=$tf_dir" output -raw batch_job_queue_name
  capture batch_definition "${function_name}-batch-worker" \
    terraform "-chdir=$tf_dir" output -raw batch_job_definition_name
fi
echo
echo "Function URL: $function_url"
echo "Try it:"
echo "  $curl_example"
echo "(The first call is a cold start: Lambda loads the image and the model.)"
if [ "$bulk" -eq 1 ]; then
  echo
  echo "Bulk function: $bulk_function"
  echo "  embed-corpus s3://BUCKET/corpus/ --output s3://BUCKET/vectors/ --target lambda://$bulk_function"
fi
if [ "$batch" -eq 1 ]; then
  echo
  echo "Batch job queue: $batch_queue"
  echo "Batch job definition: $batch_definition"
  echo "Embed a corpus on it (the workers may use only the S3 folders in batch_input_prefixes and batch_output_prefixes):"
  echo "  embed-corpus s3://BUCKET/corpus/ --output s3://BUCKET/vectors/ --target batch://$batch_queue --batch-job-definition $batch_definition"
fi
