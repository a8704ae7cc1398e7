#!/bin/bash
# Submit radiomics and embeddings as array jobs, each followed by its merge.
#   MANIFEST=cohort.csv PRE=pre.pt FT=ft.pt bash examples/slurm/submit.sh
# then run the lens on one node (seconds to minutes):
#   radlens fit-share work/emb-pre.h5 work/radiomics.h5 --sweep -o work/share.h5 ...
# Fine-tuning on several GPUs goes through torchrun, e.g.
#   torchrun --nproc-per-node 4 -m radlens_cli finetune cohort.csv ... --device cuda -o ft.pt
set -euo pipefail
cd "$(dirname "$0")/../.."   # repository root: the paths below are relative to it
export MANIFEST=${MANIFEST:-cohort.csv} WORK=${WORK:-work} PARAMS=${PARAMS:-paper}
here=examples/slurm
mkdir -p logs "$WORK"

rad=$(sbatch --parsable "$here/extract.sbatch")
sbatch --dependency=afterok:"$rad" --export=ALL,PARTS="$WORK/parts/radiomics-*.h5",OUTPUT="$WORK/radiomics.h5" \
  "$here/merge.sbatch"

for enc in ${PRE:-} ${FT:-}; do
  name=$(basename "$enc" .pt)
  emb=$(sbatch --parsable --export=ALL,ENCODER="$enc",NAME="$name" "$here/embed.sbatch")
  sbatch --dependency=afterok:"$emb" \
    --export=ALL,PARTS="$WORK/parts-emb-$name/emb-*.h5",OUTPUT="$WORK/emb-$name.h5" "$here/merge.sbatch"
done
