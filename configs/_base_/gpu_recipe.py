# The GPU training recipe (docs/training_recipe.md): speed levers for any of our configs,
# applied by SafeRunner (runner_type of every config here, also under `mim train`). Add
# this file to a config's _base_ list; it defines only the key gpu_recipe, so it sits
# beside any config. Every lever leaves a CPU run working: it applies on CUDA only, or
# fails at the start with a message naming it. Change one with --cfg-options, e.g.
# gpu_recipe.amp=float16 (the PVT v2 release's fp16 runs) or gpu_recipe.compile=True.
gpu_recipe = dict(
    # Mixed precision (AmpOptimWrapper): 'auto' is bfloat16 on a GPU that computes in it
    # (compute capability >= 8.0), else float16 with dynamic loss scaling; on the CPU
    # bfloat16 autocast. False: fp32. Or 'bfloat16' / 'float16'.
    amp='auto',
    # Adam / AdamW with fused=True where torch has the fused kernel for the parameters'
    # device (CUDA; the CPU from torch 2.4), else torch's default implementation.
    fused_optimizer=True,
    # Under AMP on CUDA: neck and heads in channels-last memory format (NHWC convs on
    # tensor cores). Off until a GPU run says it pays: the backbone hands over NCHW maps,
    # so each level is converted, and at 512x512 the H100 steps were launch-bound.
    channels_last=False,
    # cuDNN's algorithm search per input shape. Off: COCO batches come in many shapes
    # (keep-ratio resize to 1333x800, padded to 32), each searched anew; mmdet's default.
    cudnn_benchmark=False,
    # torch.compile(train_step, dynamic=True) on CUDA (skipped on the CPU). Off: minutes
    # of compiling, unmeasured on a GPU; True or a dict of torch.compile arguments.
    compile=False,
    # Gradient checkpointing of the backbone blocks: less memory for a larger batch at
    # the cost of recomputing the forward. Off; the lever to fit a larger batch.
    with_cp=False,
)
