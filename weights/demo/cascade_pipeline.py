from cascade.pipelines import CascadePipeline
