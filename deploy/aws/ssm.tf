# The cluster's secrets: SecureString parameters the instances read at every
# start of wharf with their role (start-wharf.sh). With manage_parameters the
# values come from variables and so also sit in the Terraform state.

resource "aws_ssm_parameter" "mongo_uri" {
  count  = var.manage_parameters ? 1 : 0
  name   = local.parameter_names.mongo_uri
  type   = "SecureString"
  key_id = var.kms_key_arn != "" ? var.kms_key_arn : null
  value  = var.mongo_uri

  lifecycle {
    precondition {
      condition     = can(regex("^mongodb(\\+srv)?://[^'\\n]+$", var.mongo_uri))
      error_message = "mongo_uri: a mongodb:// or mongodb+srv:// URI without quotes or newlines (or manage_parameters = false)."
    }
  }
}

resource "aws_ssm_parameter" "secrets_key" {
  count  = var.manage_parameters ? 1 : 0
  name   = local.parameter_names.secrets_key
  type   = "SecureString"
  key_id = var.kms_key_arn != "" ? var.kms_key_arn : null
  value  = var.secrets_key

  lifecycle {
    precondition {
      condition     = can(regex("^[0-9a-fA-F]{64}$", var.secrets_key))
      error_message = "secrets_key: 64 hex digits (openssl rand -hex 32), or manage_parameters = false."
    }
  }
}

resource "aws_ssm_parameter" "admin_token" {
  count  = var.manage_parameters ? 1 : 0
  name   = local.parameter_names.admin_token
  type   = "SecureString"
  key_id = var.kms_key_arn != "" ? var.kms_key_arn : null
  value  = var.admin_token

  lifecycle {
    precondition {
      condition     = length(var.admin_token) >= 24 && !can(regex("['\\s]", var.admin_token))
      error_message = "admin_token: at least 24 characters without quotes or spaces, or manage_parameters = false."
    }
  }
}
