# Deploying to AWS (image, plan, apply, destroy) and the offline proof of terraform/ (test-terraform).
# Every deploy target checks its tools, credentials and region first and names what is missing
# before it changes anything. Details: terraform/README.md.

TF_DIR ?= terraform
TF     := terraform -chdir=$(TF_DIR)
# The image tag (scripts/image-tag.sh): the git revision, and "-dirty-" with a hash of the build
# context and the Dockerfile when they differ from the revision's. ECR tags are immutable and
# `image` skips a tag ECR already has, so the hash covers every file the build can see, untracked
# ones too. Worked out on first use, once, so targets that do not use it do not run the script.
IMAGE_TAG = $(eval IMAGE_TAG := $(or $(shell scripts/image-tag.sh),$(error scripts/image-tag.sh printed no image tag)))$(IMAGE_TAG)
# Where `make lambda` (mk/lambda.mk) leaves the custom-header-fn package, and for which CPU.
LAMBDA_ZIP  ?= $(CURDIR)/target/lambda/bootstrap/bootstrap.zip
LAMBDA_ARCH ?= arm64
TF_VARS      = -var 'image_tag=$(IMAGE_TAG)' -var 'lambda_zip_path=$(LAMBDA_ZIP)' -var 'lambda_architecture=$(LAMBDA_ARCH)'
# For unattended runs: make apply TF_APPLY_FLAGS=-auto-approve
TF_APPLY_FLAGS ?=

# $(call preflight,tools...): every tool present, AWS credentials valid, a region chosen.
define preflight
	@missing=(); for tool in $(1); do command -v $$tool >/dev/null || missing+=("$$tool"); done; \
	if (($${#missing[@]})); then \
	  echo "Missing tools: $${missing[*]}. docker: Docker Engine with buildx; aws: AWS CLI v2;" \
	       "terraform: 1.11+ (https://developer.hashicorp.com/terraform/install);" \
	       "cargo-lambda: \`make tools\`. Nothing was changed." >&2; exit 1; fi; \
	if ! aws sts get-caller-identity --query Arn --output text >/dev/null 2>&1; then \
	  echo "No valid AWS credentials: set AWS_PROFILE (then \`aws sso login\` if it uses SSO) or" \
	       "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY. Nothing was changed." >&2; exit 1; fi; \
	if [[ -z "$${AWS_REGION:-$${AWS_DEFAULT_REGION:-$$(aws configure get region 2>/dev/null)}}" ]]; then \
	  echo "No AWS region: set AWS_REGION (or a region in your AWS profile). Nothing was changed." >&2; exit 1; fi; \
	echo "Deploying as $$(aws sts get-caller-identity --query Arn --output text) in $${AWS_REGION:-$${AWS_DEFAULT_REGION:-$$(aws configure get region)}}"
endef

define require_docker
	@docker info >/dev/null 2>&1 || { echo "The Docker engine does not answer (is it running?). Nothing was changed." >&2; exit 1; }
	@# No QEMU needed: the Dockerfile cross-compiles on the host's CPU and runs nothing in the arm64
	@# stage, but --platform linux/arm64 and --push take buildx.
	@docker buildx version >/dev/null 2>&1 || { echo "docker buildx is missing (install the buildx plugin: the image is built" \
	  "with docker buildx build --platform linux/arm64). Nothing was changed." >&2; exit 1; }
endef

define require_lambda_zip
	@[[ -f "$(LAMBDA_ZIP)" ]] || { echo "$(LAMBDA_ZIP) is missing: run \`make lambda\`." >&2; exit 1; }
endef

.PHONY: image plan apply rotate-secret destroy test-terraform terraform-check terraform-plans terraform-e2e

image: ## Build the server image for linux/arm64 (cross-compiled), tag it (scripts/image-tag.sh), push it to the ECR repository
	$(call preflight,docker aws terraform)
	$(call require_docker)
	@repository=$$($(TF) output -raw ecr_repository_url 2>/dev/null) || { \
	  echo "No ECR repository in the Terraform state yet: \`make apply\` creates it first." >&2; exit 1; }; \
	if aws ecr describe-images --repository-name "$${repository#*/}" --image-ids imageTag=$(IMAGE_TAG) >/dev/null 2>&1; then \
	  echo "$$repository:$(IMAGE_TAG) is already in ECR (tags are immutable); not rebuilding."; exit 0; fi; \
	aws ecr get-login-password | docker login --username AWS --password-stdin "$${repository%%/*}"; \
	docker buildx build --platform linux/arm64 --tag "$$repository:$(IMAGE_TAG)" --push .

plan: ## Show what `make apply` would change (builds the Lambda package first)
	$(call preflight,aws terraform cargo-lambda)
	$(MAKE) lambda
	$(call require_lambda_zip)
	$(TF) init -input=false
	$(TF) plan $(TF_VARS)

apply: ## Deploy everything from nothing: the Lambda package, the ECR repository, the image, then the rest
	$(call preflight,docker aws terraform cargo-lambda)
	$(call require_docker)
	$(MAKE) lambda
	$(call require_lambda_zip)
	$(TF) init -input=false
	@echo "--- 1/4 the ECS service-linked role (an account that never used ECS has none yet)"
	scripts/ensure-service-linked-role.sh
	@echo "--- 2/4 the ECR repository (the image needs somewhere to go)"
	$(TF) apply -input=false -auto-approve -target=module.ecr $(TF_VARS)
	@echo "--- 3/4 the image $(IMAGE_TAG)"
	$(MAKE) image IMAGE_TAG=$(IMAGE_TAG)
	@echo "--- 4/4 everything else"
	$(TF) apply -input=false $(TF_APPLY_FLAGS) $(TF_VARS)
	@[[ "$$($(TF) output -raw origin_protocol 2>/dev/null)/$$($(TF) output -raw origin_access 2>/dev/null)" != http/public ]] || \
	  echo "Note: without domain_name, CloudFront reaches the load balancer over plain HTTP: the secret header and every" \
	  "message cross the internet in clear between CloudFront and AWS's region. For production set domain_name and" \
	  "hosted_zone_id, or origin_access = \"vpc\" (README, \"Your own domain, a private origin\")."

rotate-secret: ## Rotate the secret header between CloudFront and the load balancer in two phases, checking the service (make smoke) after each step
	$(call preflight,aws terraform python3 cargo cargo-lambda)
	@# The load balancer's targeted applies also refresh what its rule depends on, the function
	@# included: it must be the package `make apply` would deploy, never a stand-in.
	$(MAKE) lambda
	$(call require_lambda_zip)
	$(TF) init -input=false >/dev/null
	scripts/rotate-secret.sh $(TF_DIR) $(TF_VARS)

destroy: ## Delete everything `make apply` created (images and logs included)
	$(call preflight,aws terraform python3)
	$(TF) init -input=false
	@# Terraform evaluates the configuration, the package's hash included, even to destroy; an empty
	@# stand-in spares building the Lambda just to delete it (a destroy uploads nothing), and the
	@# image tag is a placeholder for the same reason (nothing is deployed; no git checkout needed).
	@zip="$(LAMBDA_ZIP)"; if [[ ! -f $$zip ]]; then zip=$$(mktemp --suffix=.zip); \
	  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1], "w").close()' "$$zip"; fi; \
	$(TF) destroy -input=false $(TF_APPLY_FLAGS) -var 'image_tag=destroy' -var "lambda_zip_path=$$zip"

test-terraform: tools ## The whole offline proof of terraform/ and the Dockerfile
	@# The static checks and the plans share nothing and wait on no clock, so they run side by side
	@# (together about a minute less than one after the other on 2 cores); the e2e, which has a time
	@# budget, runs alone.
	$(MAKE) -j2 --output-sync=target terraform-check terraform-plans
	$(MAKE) terraform-e2e
	$(MAKE) test-image-tag

terraform-check: tools ## fmt, init, validate and terraform test of the root and every module, checkov, hadolint (offline, about 2 minutes, most of it checkov)
	terraform/test/check.sh

terraform-plans: tools ## every deployment mode (public/vpc origin, with/without a domain) planned against moto and scanned by checkov (offline, about a minute and a half)
	terraform/test/plans.sh

terraform-e2e: tools ## apply, plan, rotate and destroy against moto with the real custom-header-fn (offline, minutes)
	terraform/test/e2e.sh

.PHONY: test-image-tag
test-image-tag: ## scripts/image-tag.sh on a temporary clone, and the build context alone checks the server (offline, a minute)
	scripts/test-image-tag.sh
