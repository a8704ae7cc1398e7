#!/bin/bash
# Submit radiomics and embeddings as array jobs, each followed by its merge (afterok).
#   MANIFEST=cohort.csv PRE=pre.pt FT=ft.pt bash path/to/examples/slurm/submit.sh
# Relative paths (MANIFEST, WORK, PRE, FT, PARAMS) are taken from the folder you submit
# from, as SLURM does; logs go to ./logs. Overrides: RAD_ARRAY=0-99 and EMB_ARRAY=0-3
# (array sizes), MODALITIES, MASK, DEVICE, EMBED_OPTS (see the .sbatch files).
# Then run the lens on one node (seconds to minutes):
#   radlens fit-share work/emb-pre.h5 work/radiomics.h5 --sweep -o work/share.h5 ...
# Fine-tuning on several GPUs goes through torchrun, e.g.
#   torchrun --nproc-per-node 4 -m radlens_cli finetune cohort.csv ... --device cuda -o ft.pt
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export MANIFEST=${MANIFEST:-cohort.csv} WORK=${WORK:-work} PARAMS=${PARAMS:-paper}
mkdir -p logs "$WORK"

rad=$(sbatch --parsable ${RAD_ARRAY:+--array="$RAD_ARRAY"} "$here/extract.sbatch")
sbatch --parsable --dependency=afterok:"$rad" \
  --export=ALL,PARTS="$WORK/parts/radiomics-*.h5",OUTPUT="$WORK/radiomics.h5" "$here/merge.sbatch"

for enc in ${PRE:-} ${FT:-}; do
  name=$(basename "$enc" .pt)
  emb=$(sbatch --parsable ${EMB_ARRAY:+--array="$EMB_ARRAY"} --export=ALL,ENCODER="$enc",NAME="$name" \
    "$here/embed.sbatch")
  sbatch --parsable --dependency=afterok:"$emb" \
    --export=ALL,PARTS="$WORK/parts-emb-$name/emb-*.h5",OUTPUT="$WORK/emb-$name.h5" "$here/merge.sbatch"
done
