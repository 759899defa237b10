from cascade.pipelines import SpatialSRPipeline
