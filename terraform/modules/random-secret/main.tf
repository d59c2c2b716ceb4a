# A Secrets Manager secret holding a random value that Terraform never sees in clear: Secrets
# Manager draws it (GetRandomPassword) into an ephemeral value, which is kept neither in the state
# nor in the plan, and it reaches the secret through a write-only attribute. Whoever needs the
# value reads the secret: a task through `secrets`, Terraform through the
# aws_secretsmanager_secret_version data source, which the provider marks sensitive.
ephemeral "aws_secretsmanager_random_password" "this" {
  password_length     = var.length
  exclude_punctuation = true
  exclude_uppercase   = var.lowercase_only
}

resource "aws_secretsmanager_secret" "this" {
  #checkov:skip=CKV_AWS_149:Encrypted with the AWS managed key; a customer managed key would add cost and a key policy for no reader outside this account.
  #checkov:skip=CKV2_AWS_57:No automatic rotation: the value is drawn once; the owner of the secret rotates it by its own procedure.
  name_prefix = "${var.name}-"
  description = var.description
  # `make destroy` deletes it at once, so a new deployment of the same name can follow.
  recovery_window_in_days = 0
}

resource "aws_secretsmanager_secret_version" "this" {
  secret_id                = aws_secretsmanager_secret.this.id
  secret_string_wo         = ephemeral.aws_secretsmanager_random_password.this.random_password
  secret_string_wo_version = 1
}
