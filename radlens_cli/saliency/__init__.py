"""Where in the image: saliency maps of a model's output and radiomic concept maps.

- `methods.py`: Grad-CAM, Grad-CAM++, EigenCAM, ScoreCAM and occlusion of one scalar
  output per case, on Captum's hooks and attribution classes (the optional extra
  `radlens[saliency]`), and the occlusion loop for ONNX models;
- `model.py`: the scored model (a finetune checkpoint's encoder + head, a factory or
  TorchScript model with a head, an ONNX model), the output a map explains, the layer;
- `concept.py`: the decoded radiomic feature as a torch function of the input, built
  from what SHARE.h5 and DEC.h5 store, and its gradient / integrated-gradients map;
- `metrics.py`: mass in the mask, deletion AUC, agreement between maps (numpy only);
- `run.py`: the per-case loop (parts, failures), maps back on each case's own grid;
- `cohort.py`: `saliency_cohort`, what `radlens saliency` runs (models, cases, table, maps).
"""
