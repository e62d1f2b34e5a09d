"""What the tests share: the program under mocks (harness, transitions, stacks), the servers the
integration tests start (servers, clocked_s3, fault_proxy, s3_stub, local_http, fake_cvat), the pod
scripts' and the operator command's set-ups (backup_scripts, backups_command), made-up exports for
the audit (audit_exports). The benchmarks use them too."""
