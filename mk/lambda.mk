# The custom-header-fn Lambda: its deployable package (lambda) and its tests (test-lambda).
# Details: custom-header-fn/README.md.

# arm64 (Graviton) is what Terraform deploys by default (origin-secret's `architecture`). A host
# that cannot add the aarch64 Rust target builds and deploys x86_64 instead with
# `make apply LAMBDA_ARCH=x86_64`: mk/deploy.mk hands LAMBDA_ARCH to Terraform as
# lambda_architecture, which overrides terraform.tfvars, so the package and the function agree.
LAMBDA_ARCH ?= arm64
LAMBDA_TARGET_arm64  := aarch64-unknown-linux-gnu
LAMBDA_TARGET_x86_64 := x86_64-unknown-linux-gnu
LAMBDA_FLAG_arm64    := --arm64
LAMBDA_FLAG_x86_64   := --x86-64

.PHONY: lambda test-lambda

lambda: ## Build target/lambda/bootstrap/bootstrap.zip for provided.al2023 (LAMBDA_ARCH=arm64, the default, or x86_64)
	@[[ -n "$(LAMBDA_TARGET_$(LAMBDA_ARCH))" ]] || { echo "LAMBDA_ARCH must be arm64 or x86_64, not '$(LAMBDA_ARCH)'." >&2; exit 1; }
	@command -v cargo-lambda >/dev/null || { echo "cargo-lambda is missing: \`make tools\` installs it (with zig, which links against Amazon Linux 2023's glibc)." >&2; exit 1; }
	@! command -v rustup >/dev/null || rustup target list --installed | grep -qx '$(LAMBDA_TARGET_$(LAMBDA_ARCH))' || { \
	  echo "The Rust target $(LAMBDA_TARGET_$(LAMBDA_ARCH)) is missing: \`rustup target add $(LAMBDA_TARGET_$(LAMBDA_ARCH))\`." \
	       "Where it cannot be added, build and deploy x86_64 on an x86_64 host: \`make apply LAMBDA_ARCH=x86_64\` (or plan)." >&2; exit 1; }
	cargo lambda build --release $(LAMBDA_FLAG_$(LAMBDA_ARCH)) --output-format zip --package custom-header-fn --bin bootstrap
	@echo "$(LAMBDA_ARCH) package: target/lambda/bootstrap/bootstrap.zip ($$(stat -c %s target/lambda/bootstrap/bootstrap.zip) bytes)"

test-lambda: tools ## Run the custom-header-fn tests (unit, moto, mocked retry, bootstrap under cargo lambda watch)
	cargo test -p custom-header-fn
