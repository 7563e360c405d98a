"""Generated from protos/affectline/v1 by scripts/gen_protos.sh. Do not edit by hand."""
