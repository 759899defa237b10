from cascade.models.video_unet import VideoUNet
