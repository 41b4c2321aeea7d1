# Restart policy: the task fails twice, then succeeds; the restart block allows 3
# attempts with a 1s delay (plus Nomad's up-to-25% jitter). Set -var fail_times=5 to see
# the task fail for good (exit code 1).
variable "image" {
  type    = string
  default = "localhost/ndp-busybox:latest"
}

variable "fail_times" {
  type    = number
  default = 2
}

job "restart" {
  type = "batch"

  group "flaky" {
    restart {
      attempts = 3
      interval = "1m"
      delay    = "1s"
      mode     = "fail"
    }

    task "flaky" {
      driver = "podman"
      config {
        image   = var.image
        command = "sh"
        args = [
          "-c",
          "n=$(cat $NOMAD_ALLOC_DIR/data/runs 2>/dev/null || echo 0); n=$((n+1)); echo $n >$NOMAD_ALLOC_DIR/data/runs; if [ $n -le ${var.fail_times} ]; then echo \"run $n fails\"; exit 7; fi; echo \"run $n succeeds\"",
        ]
      }
    }
  }
}
