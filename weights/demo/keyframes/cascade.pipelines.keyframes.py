from cascade.pipelines.keyframes import KeyframesPipeline
