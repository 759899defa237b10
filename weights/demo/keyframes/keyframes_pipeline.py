from cascade.pipelines import KeyframesPipeline
