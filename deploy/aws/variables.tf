# Where

variable "region" {
  description = "AWS region to deploy into."
  type        = string
}

variable "name" {
  description = "Name of this deployment: prefixes every resource, the SSM path default and the ASG names."
  type        = string
  default     = "wharf"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,20}$", var.name))
    error_message = "name: lower-case letters, digits and dashes, at most 21 characters, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC to deploy into (an existing one: this module creates no network)."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets for the Wharf instances, in at least two availability zones (private subnets with a NAT gateway or VPC endpoints for SSM, S3 and the npm registry's egress)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids: at least one subnet."
  }
}

variable "alb_subnet_ids" {
  description = "Subnets for the load balancer, in at least two availability zones (public subnets for an internet-facing ALB). Default: subnet_ids."
  type        = list(string)
  default     = []
}

variable "internal" {
  description = "Make the load balancer internal (reachable only inside the VPC)."
  type        = bool
  default     = false
}

variable "allowed_cidrs" {
  description = "Client CIDRs allowed to reach the load balancer."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "certificate_arn" {
  description = "ACM certificate for HTTPS on 443 (HTTP on 80 then redirects). Empty: HTTP on 80 only."
  type        = string
  default     = ""
}

# What runs

variable "wharf_binary_url" {
  description = "HTTPS URL of the wharf binary (linux, the instances' architecture, built with CGO_ENABLED=0). Set this or wharf_binary_s3_uri."
  type        = string
  default     = ""

  validation {
    condition     = var.wharf_binary_url == "" || can(regex("^https://[^'\\s]+$", var.wharf_binary_url))
    error_message = "wharf_binary_url must be an https:// URL without quotes or spaces."
  }
}

variable "wharf_binary_s3_uri" {
  description = "s3://bucket/key of the wharf binary, read with the instance role (which gets s3:GetObject on exactly this object). Set this or wharf_binary_url."
  type        = string
  default     = ""

  validation {
    condition     = var.wharf_binary_s3_uri == "" || can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^'\\s]+$", var.wharf_binary_s3_uri))
    error_message = "wharf_binary_s3_uri must look like s3://bucket/key (no quotes or spaces)."
  }
}

variable "wharf_binary_sha256" {
  description = "sha256 of the wharf binary: the instance refuses any other file. Changing it (a new release) rolls the ASG through an instance refresh."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.wharf_binary_sha256))
    error_message = "wharf_binary_sha256: 64 lower-case hex digits (sha256sum wharf)."
  }
}

variable "node_version" {
  description = "Node.js release installed from nodejs.org (checked against its SHASUMS256.txt): wharf serve builds the tenants' FROM-scratch runtime image out of it."
  type        = string
  default     = "20.20.2"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.node_version))
    error_message = "node_version: a release like 20.20.2."
  }
}

variable "listen_port" {
  description = "Port wharf serve listens on (only the load balancer reaches it)."
  type        = number
  default     = 8080

  validation {
    condition     = var.listen_port >= 1024 && var.listen_port <= 65535
    error_message = "listen_port: 1024 to 65535."
  }
}

variable "wharf_settings" {
  description = "Extra WHARF_* settings for every node (see wharf serve --help), e.g. { WHARF_POOL_SIZE = \"8\", WHARF_CONTAINER_MEMORY = \"256m\" }. Secrets do not belong here: they come from SSM."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for k, v in var.wharf_settings :
      can(regex("^WHARF_[A-Z0-9_]+$", k)) && !can(regex("['\\n]", v)) &&
    !contains(["WHARF_MONGO_URI", "WHARF_SECRETS_KEY", "WHARF_ADMIN_TOKEN", "WHARF_NODE_ID", "WHARF_LISTEN", "WHARF_DATA_DIR"], k)])
    error_message = "wharf_settings: keys WHARF_*, values without quotes or newlines; the store URI, keys, node id, listen address and data dir are set by the module."
  }
}

variable "shutdown_timeout" {
  description = "How long a draining node lets in-flight requests finish (wharf --shutdown-timeout), in seconds."
  type        = number
  default     = 30

  validation {
    condition     = var.shutdown_timeout >= 1 && var.shutdown_timeout <= 150
    error_message = "shutdown_timeout: 1 to 150 seconds (wharf.service gives a stop 180 s in all, container removal included)."
  }
}

# Secrets in SSM Parameter Store

variable "ssm_prefix" {
  description = "SSM path holding the SecureString parameters mongo-uri, secrets-key and admin-token. Default: /<name>."
  type        = string
  default     = ""

  validation {
    condition     = var.ssm_prefix == "" || can(regex("^(/[A-Za-z0-9_.-]+)+$", var.ssm_prefix))
    error_message = "ssm_prefix: a path like /wharf/prod."
  }
}

variable "manage_parameters" {
  description = "Create the three SSM parameters from mongo_uri, secrets_key and admin_token (their values then sit in the Terraform state: keep it encrypted). false: create them yourself (aws ssm put-parameter --type SecureString) and leave those variables empty."
  type        = bool
  default     = true
}

variable "mongo_uri" {
  description = "MongoDB URI shared by every node (Atlas, DocumentDB or a self-hosted replica set; see README). Only with manage_parameters."
  type        = string
  default     = ""
  sensitive   = true
}

variable "secrets_key" {
  description = "Key sealing function secrets, 64 hex digits (openssl rand -hex 32). The same for every node, forever: losing it loses every tenant's secrets. Only with manage_parameters."
  type        = string
  default     = ""
  sensitive   = true
}

variable "admin_token" {
  description = "Admin API token shared by every node (e.g. wha_ + openssl rand -hex 24). Only with manage_parameters."
  type        = string
  default     = ""
  sensitive   = true
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key of the SecureString parameters. Empty: the AWS-managed key aws/ssm."
  type        = string
  default     = ""
}

# Capacity

variable "instance_type" {
  description = "Instance type of the nodes. Each tenant container is capped at --container-memory (128 MiB by default) and uses about 9-12 MiB idle; see docs/operations.md."
  type        = string
  default     = "m6i.large"
}

variable "architecture" {
  description = "x86_64 or arm64: the AMI's and the wharf binary's architecture."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture: x86_64 or arm64."
  }
}

variable "ami_id" {
  description = "AMI of the instances. Empty: the latest official Debian 12 image (the user data uses apt-get and Debian's docker.io and awscli)."
  type        = string
  default     = ""
}

variable "root_volume_gb" {
  description = "Root volume size (Docker images, tenant code, the module store)."
  type        = number
  default     = 30
}

variable "min_size" {
  description = "Fewest nodes."
  type        = number
  default     = 2
}

variable "max_size" {
  description = "Most nodes."
  type        = number
  default     = 10
}

variable "desired_capacity" {
  description = "Nodes at creation (the scaling policies move it afterwards; later applies leave it alone). Default: min_size."
  type        = number
  default     = null
}

variable "target_cpu_percent" {
  description = "Target tracking on average CPU of the group. null disables it."
  type        = number
  default     = 60
}

variable "target_requests_per_node_per_minute" {
  description = "Target tracking on the ALB's requests per node per minute. null disables it."
  type        = number
  default     = 6000
}

variable "health_check_type" {
  description = "How the ASG decides an instance is dead: EC2 (the default: instance status only) or ELB (also the target group's /readyz). /readyz fails on every node while the shared MongoDB is unreachable, so ELB would replace the whole group during a database outage."
  type        = string
  default     = "EC2"

  validation {
    condition     = contains(["EC2", "ELB"], var.health_check_type)
    error_message = "health_check_type: EC2 or ELB."
  }
}

variable "deregistration_delay" {
  description = "Seconds the ALB lets requests in flight finish on a node leaving the target group."
  type        = number
  default     = 30

  validation {
    condition     = var.deregistration_delay >= 0 && var.deregistration_delay <= 3600
    error_message = "deregistration_delay: 0 to 3600 seconds."
  }
}

variable "idle_timeout" {
  description = "ALB idle timeout in seconds: above the longest function timeout (wharf --max-function-timeout, 5 min by default)."
  type        = number
  default     = 330

  validation {
    condition     = var.idle_timeout >= 60 && var.idle_timeout <= 4000
    error_message = "idle_timeout: 60 to 4000 seconds."
  }
}

variable "container_blocked_cidrs" {
  description = "Destinations tenant containers may not reach: wharf's own firewall (WHARF_EGRESS_DENY) and, for every container on the instance, iptables DOCKER-USER rules. Default: the instance metadata service and the whole VPC (the MongoDB, other nodes)."
  type        = list(string)
  default     = null
}

variable "enable_session_manager" {
  description = "Attach AmazonSSMManagedInstanceCore so operators can open shells with Session Manager."
  type        = bool
  default     = false
}

# Builders (optional)

variable "builder_count" {
  description = "Instances running `wharf builder` alone (module builds off the serving nodes). 0: no builder group."
  type        = number
  default     = 0

  validation {
    condition     = var.builder_count >= 0 && floor(var.builder_count) == var.builder_count
    error_message = "builder_count: a whole number, 0 or more."
  }
}

variable "builder_instance_type" {
  description = "Instance type of the builders."
  type        = string
  default     = "c6i.large"
}

variable "builder_settings" {
  description = "Extra WHARF_* settings for the builders (see wharf builder --help)."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
