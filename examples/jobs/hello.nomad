# A batch job: one task prints a greeting and its Nomad environment, then exits.
#   nomad-driver-podman run examples/jobs/hello.nomad
#   nomad-driver-podman run -var greeting=hi examples/jobs/hello.nomad
variable "image" {
  type    = string
  default = "localhost/ndp-busybox:latest"
}

variable "greeting" {
  type    = string
  default = "Hello"
  validation {
    condition     = length(var.greeting) > 0
    error_message = "The greeting must not be empty."
  }
}

locals {
  who = "podman"
}

job "hello" {
  type = "batch"

  group "hello" {
    task "say" {
      driver = "podman"

      config {
        image   = var.image
        command = "sh"
        args = [
          "-c",
          "echo \"$GREETING\"; echo \"job=$NOMAD_JOB_NAME alloc=$NOMAD_ALLOC_INDEX task=$NOMAD_TASK_NAME\"; echo done >$NOMAD_ALLOC_DIR/data/hello.txt",
        ]
      }

      env {
        GREETING = "${var.greeting}, ${local.who} from ${NOMAD_TASK_NAME}!"
      }

      resources {
        cpu    = 100
        memory = 32
      }
    }
  }
}
