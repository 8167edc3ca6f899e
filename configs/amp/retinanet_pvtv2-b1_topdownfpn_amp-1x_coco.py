# The mixed-precision twin of ../retinanet/retinanet_pvtv2-b1_topdownfpn_1x_coco.py: the same
# model, data and schedule, trained with the GPU recipe of ../_base_/gpu_recipe.py (AMP:
# bfloat16 where the GPU computes in it, else float16 with dynamic loss scaling as the
# release's fp16 runs; bfloat16 autocast on the CPU). See docs/training_recipe.md.
_base_ = [
    '../retinanet/retinanet_pvtv2-b1_topdownfpn_1x_coco.py',
    '../_base_/gpu_recipe.py',
]
