<resource schema="similarity" resdir=".">
  <!-- vo-similarity: images, their exact nearest neighbours under learned
    affine-invariant embeddings, the models that made them, and what users
    marked similar.  Loaded by `vo-similarity publish` (docs/publish.md):
    images and models through `dachs imp`, neighbours by binary COPY into
    sql/neighbour_sets.sql's partitioned table, swapped in per model. -->
  <meta name="title">Image similarity: nearest neighbours of archive images</meta>
  <meta name="description">
    For every image of the collection, its nearest neighbours (up to 1000, in
    rank order) under self-supervised, affine-invariant image embeddings
    (SimCLR, Chen et al. 2020, arXiv:2002.05709).  The images are published in
    ivoa.obscore; similarity.neighbours joins them with each other, so that
    "show me images like this one" is one ADQL statement.  Several
    collections (obs_collection) and several models per collection (e.g. one
    per science category) live side by side, told apart by model_id.
  </meta>
  <meta name="creationDate">2026-11-27T00:00:00Z</meta>
  <meta name="subject">astronomical-object-classification</meta>
  <meta name="subject">astronomical-methods</meta>
  <meta name="creator.name">vo-similarity</meta>
  <meta name="contentLevel">Research</meta>
  <meta name="type">Archive</meta>
  <meta name="_dataUpdated">2026-11-27T00:00:00Z</meta>

  <!-- =========================== images =========================== -->
  <table id="images" onDisk="True" adql="True" primary="image_id">
    <meta name="description">One row per image: position, field of view,
      target, science category and credit.  Published into ivoa.obscore
      (access_url is the image file, preview a PNG).</meta>
    <mixin>//products#table</mixin>
    <mixin
      productType="'image'"
      calibLevel="0"
      collectionName="collection"
      did="obs_publisher_did"
      obsId="obs_id"
      title="COALESCE(NULLIF(target_name, ''), obs_id) || ' (' || credit || ')'"
      targetName="NULLIF(target_name, '')"
      ra="s_ra"
      dec="s_dec"
      fov="s_fov"
      oUCD="'phot.flux'"
      mime="mime"
      createDIDIndex="True"
      >//obscore#publish</mixin>

    <column name="image_id" type="integer" required="True"
      ucd="meta.id;meta.main" tablehead="Image"
      description="Integer id of the image, unique across collections (each
        collection's ids are dense from a multiple of 10^7); the key of
        similarity.neighbours."/>
    <column name="collection" type="text" required="True"
      ucd="meta.id;meta.dataset" tablehead="Collection"
      description="The collection the image belongs to; equals
        ivoa.obscore.obs_collection."/>
    <column name="obs_publisher_did" type="text" required="True"
      ucd="meta.ref.ivoid" tablehead="DID"
      description="IVOA publisher dataset identifier; equals
        ivoa.obscore.obs_publisher_did."/>
    <column name="obs_id" type="text" ucd="meta.id"
      tablehead="Obs. id"
      description="Identifier of the observation inside this collection."/>
    <column name="target_name" type="text" ucd="meta.id;src"
      tablehead="Target"
      description="Astronomical object observed, if any."/>
    <column name="s_ra" type="double precision" unit="deg"
      ucd="pos.eq.ra;meta.main" tablehead="RA"
      description="ICRS right ascension of the image centre."/>
    <column name="s_dec" type="double precision" unit="deg"
      ucd="pos.eq.dec;meta.main" tablehead="Dec"
      description="ICRS declination of the image centre."/>
    <column name="s_fov" type="real" unit="deg"
      ucd="phys.angSize;instr.fov" tablehead="FoV"
      description="Diameter of the field of view."/>
    <column name="category" type="text" ucd="meta.code.class"
      tablehead="Category"
      description="Science category of the image (e.g. galaxy, nebula)."/>
    <column name="credit" type="text" ucd="meta.bib.author"
      tablehead="Credit"
      description="Who made the image; show it wherever the image is shown."/>
    <column name="source_path" type="text" ucd="meta.ref"
      tablehead="Source" verbLevel="25"
      description="Where the image came from (file name or URL)."/>
    <column name="label" type="text" ucd="meta.code.class"
      tablehead="Label" verbLevel="20"
      description="Class label where known (ground truth), else empty."/>
    <column name="mime" type="text" ucd="meta.code.mime"
      tablehead="Format" verbLevel="20"
      description="Media type of the image file behind access_url."/>
    <index name="images_q3c">q3c_ang2ipix(s_ra, s_dec)</index>
  </table>

  <data id="import_images" updating="True">
    <!-- one file per collection, written by `vo-similarity publish` from
      its work dir's manifest; the file's name is the collection's -->
    <sources pattern="data/collections/*.csv"/>
    <csvGrammar enc="utf-8">
      <rowfilter procDef="//products#define">
        <bind key="table">"\schema.images"</bind>
        <bind key="accref">@accref</bind>
        <bind key="path">@accref</bind>
        <bind key="fsize">int(@accsize)</bind>
        <bind key="mime">@mime</bind>
        <bind key="preview">@preview</bind>
        <bind key="preview_mime">"image/png"</bind>
      </rowfilter>
    </csvGrammar>
    <make table="images">
      <script type="newSource" lang="python" name="replace this collection">
        import os
        name = os.path.basename(kwargs["sourceToken"])[:-len(".csv")]
        table.connection.execute(
          "DELETE FROM similarity.images WHERE collection=%(name)s", {"name": name})
      </script>
      <rowmaker idmaps="image_id,collection,obs_publisher_did,obs_id,target_name,s_ra,s_dec,s_fov,category,credit,source_path,label,mime"/>
    </make>
  </data>

  <!-- =========================== models =========================== -->
  <table id="models" onDisk="True" adql="True" primary="model_id">
    <meta name="description">The models whose neighbours are published:
      name, science category, when it was published, its hyperparameters and
      evaluation metrics (JSON).</meta>
    <column name="model_id" type="smallint" required="True"
      ucd="meta.id;meta.main" tablehead="Model"
      description="Key of the model in similarity.neighbours."/>
    <column name="name" type="text" required="True" ucd="meta.id"
      tablehead="Name" description="Name of the model (its work dir folder);
        unique within its collection."/>
    <column name="collection" type="text" required="True"
      ucd="meta.id;meta.dataset" tablehead="Collection"
      description="The collection whose images the model's neighbours are
        (similarity.images.collection)."/>
    <column name="category" type="text" ucd="meta.code.class"
      tablehead="Category"
      description="Science category the model is for (empty: all images)."/>
    <column name="created" type="timestamp"
      ucd="time.creation" tablehead="Published"
      description="When these neighbours were published."/>
    <column name="n_images" type="integer" required="True" ucd="meta.number"
      tablehead="#images" description="Number of images with neighbours."/>
    <column name="k" type="smallint" required="True" ucd="meta.number"
      tablehead="k" description="Number of neighbours per image."/>
    <column name="hyperparameters" type="text" ucd="meta.note"
      tablehead="Hyperparameters"
      description="Hyperparameters of the model (the config.json, as JSON)."/>
    <column name="metrics" type="text" ucd="stat.fit.goodness"
      tablehead="Metrics"
      description="Evaluation metrics with baselines (JSON), where evaluated."/>
    <column name="dim" type="smallint" ucd="meta.number"
      tablehead="D"
      description="Dimension of the model's embedding vectors (NULL where its
        embeddings are not published).">
      <values nullLiteral="-1"/>
    </column>
    <column name="weights_url" type="text" ucd="meta.ref.url"
      tablehead="Weights"
      description="URL of the model as an ONNX file (input images float32
        [1, 1, S, S] in [0, 1], S = preprocess.size; output embedding float32
        [1, dim], unit length), for embedding one's own images the way the
        published ones were; NULL for models without trained weights."/>
    <column name="weights_sha256" type="text" ucd="meta.checksum"
      tablehead="SHA-256"
      description="Hex SHA-256 of the file at weights_url."/>
    <column name="preprocess" type="text" ucd="meta.note"
      tablehead="Preprocessing"
      description="How a raw image becomes the model's input (JSON: size,
        clip, stretch, softening, preview_size), as the images were
        ingested."/>
    <index columns="name" name="models_name"/>
  </table>

  <data id="import_models" updating="True">
    <!-- one JSON file per model, m<model_id>.json, written by
      `vo-similarity publish` -->
    <sources pattern="data/models/*.json"/>
    <embeddedGrammar>
      <iterator>
        <setup imports="json"/>
        <code>
          with open(self.sourceToken, encoding="utf-8") as f:
            yield json.load(f)
        </code>
      </iterator>
    </embeddedGrammar>
    <make table="models">
      <script type="newSource" lang="python" name="replace this model">
        import json
        with open(kwargs["sourceToken"], encoding="utf-8") as f:
          model_id = int(json.load(f)["model_id"])
        table.connection.execute(
          "DELETE FROM similarity.models WHERE model_id=%(id)s", {"id": model_id})
      </script>
      <rowmaker idmaps="*"/>
    </make>
  </data>

  <!-- ======================== neighbours ========================== -->
  <STREAM id="neighbourColumns">
    <column name="model_id" type="smallint" required="True"
      ucd="meta.id;meta.software" tablehead="Model"
      description="Model whose embedding gave this neighbour
        (see similarity.models)."/>
    <column name="image_id" type="integer" required="True"
      ucd="meta.id;meta.main" tablehead="Image"
      description="The query image (similarity.images.image_id)."/>
    <column name="rank" type="smallint" required="True"
      ucd="stat.rank" tablehead="Rank"
      description="Rank of the neighbour, 1 = most similar; the image itself
        is left out."/>
    <column name="neighbour_id" type="integer" required="True"
      ucd="meta.id.cross" tablehead="Neighbour"
      description="The similar image (similarity.images.image_id)."/>
    <column name="dist" type="real" required="True"
      ucd="pos.distance;arith.ratio" unit=""
      tablehead="Distance"
      description="Euclidean distance of the two unit embedding vectors
        (0 identical, 2 opposite); sqrt(2 - 2 cos)."/>
  </STREAM>

  <table id="neighbours" onDisk="True" adql="True">
    <meta name="description">The nearest neighbours of every image, one row
      per (model, image, rank), with the publisher DIDs of both images, so
      that one join reaches ivoa.obscore.  Stored as one row per image with
      arrays (table similarity.neighbour_sets, not in TAP) and unnested
      here.</meta>
    <FEED source="neighbourColumns"/>
    <column name="obs_publisher_did" type="text" required="True"
      ucd="meta.ref.ivoid" tablehead="DID"
      description="Publisher DID of the query image; joins
        ivoa.obscore.obs_publisher_did."/>
    <column name="neighbour_did" type="text" required="True"
      ucd="meta.ref.ivoid" tablehead="Neighbour DID"
      description="Publisher DID of the similar image; joins
        ivoa.obscore.obs_publisher_did."/>
    <foreignKey inTable="images" source="image_id" metaOnly="True"/>
    <foreignKey inTable="images" source="neighbour_id" dest="image_id"
      metaOnly="True"/>
    <foreignKey inTable="models" source="model_id" metaOnly="True"/>
    <foreignKey inTable="//obscore#ObsCore" source="obs_publisher_did"
      metaOnly="True"/>
    <foreignKey inTable="//obscore#ObsCore" source="neighbour_did"
      dest="obs_publisher_did" metaOnly="True"/>
    <viewStatement>
      CREATE VIEW \curtable (\colNames) AS (
        SELECT s.model_id, s.image_id, CAST(u.rank AS smallint),
          u.neighbour_id, u.dist, q.obs_publisher_did, nb.obs_publisher_did
        FROM \schema.neighbour_sets AS s
        JOIN \schema.images AS q ON q.image_id = s.image_id
        CROSS JOIN LATERAL unnest(s.neighbour_ids, s.dists)
          WITH ORDINALITY AS u(neighbour_id, dist, rank)
        JOIN \schema.images AS nb ON nb.image_id = u.neighbour_id)
    </viewStatement>
  </table>

  <table id="outliers" onDisk="True" adql="True">
    <meta name="description">Per model and image, how unusual the image is:
      the outlier score of the neighbour stage (larger: fewer close
      neighbours).</meta>
    <column original="neighbours.model_id"/>
    <column original="neighbours.image_id"/>
    <column original="neighbours.obs_publisher_did"/>
    <column name="outlier" type="real" ucd="meta.code.qual;stat.mean"
      tablehead="Outlier score"
      description="Outlier score of the image under this model (larger is
        more unusual); NULL where the neighbour stage wrote none."/>
    <foreignKey inTable="images" source="image_id" metaOnly="True"/>
    <foreignKey inTable="models" source="model_id" metaOnly="True"/>
    <foreignKey inTable="//obscore#ObsCore" source="obs_publisher_did"
      metaOnly="True"/>
    <viewStatement>
      CREATE VIEW \curtable (\colNames) AS (
        SELECT s.model_id, s.image_id, q.obs_publisher_did,
          NULLIF(s.outlier, 'NaN'::real)
        FROM \schema.neighbour_sets AS s
        JOIN \schema.images AS q ON q.image_id = s.image_id)
    </viewStatement>
  </table>

  <table id="similar_by_model" onDisk="True" adql="True">
    <meta name="description">"Images like this one" for every model: one
      row per (model, query image, rank) with the query image's obs_id and
      position and the neighbour's ObsCore columns, so that no join is
      needed.  Query it by query_did (or query_obs_id) and model_id, e.g.
      SELECT TOP 20 * FROM similarity.similar_by_model WHERE query_did =
      '...' AND model_id = 2 ORDER BY rank; similarity.similar is the short
      form for each collection's default model.</meta>
    <column original="neighbours.model_id"/>
    <column name="query_did" type="text" required="True"
      ucd="meta.ref.ivoid" tablehead="Query DID"
      description="Publisher DID of the query image; joins
        ivoa.obscore.obs_publisher_did."/>
    <column name="query_obs_id" type="text" ucd="meta.id"
      tablehead="Query obs. id"
      description="obs_id of the query image."/>
    <column name="query_ra" type="double precision" unit="deg"
      ucd="pos.eq.ra" tablehead="Query RA"
      description="ICRS right ascension of the query image's centre."/>
    <column name="query_dec" type="double precision" unit="deg"
      ucd="pos.eq.dec" tablehead="Query Dec"
      description="ICRS declination of the query image's centre."/>
    <column original="neighbours.rank"/>
    <column original="neighbours.dist"/>
    <column name="obs_publisher_did" type="text" required="True"
      ucd="meta.ref.ivoid" tablehead="DID"
      description="Publisher DID of the similar image (the neighbour); joins
        ivoa.obscore.obs_publisher_did."/>
    <column name="obs_id" type="text" ucd="meta.id"
      tablehead="Obs. id"
      description="obs_id of the similar image."/>
    <column name="target_name" type="text" ucd="meta.id;src"
      tablehead="Target"
      description="Astronomical object in the similar image, if any."/>
    <column name="s_ra" type="double precision" unit="deg"
      ucd="pos.eq.ra;meta.main" tablehead="RA"
      description="ICRS right ascension of the similar image's centre."/>
    <column name="s_dec" type="double precision" unit="deg"
      ucd="pos.eq.dec;meta.main" tablehead="Dec"
      description="ICRS declination of the similar image's centre."/>
    <column name="s_fov" type="real" unit="deg"
      ucd="phys.angSize;instr.fov" tablehead="FoV"
      description="Diameter of the similar image's field of view."/>
    <column name="access_url" type="text" ucd="meta.ref.url"
      tablehead="Access URL" displayHint="type=product"
      description="URL of the similar image's file (as in
        ivoa.obscore.access_url)."/>
    <column name="access_format" type="text" ucd="meta.code.mime"
      tablehead="Media Type"
      description="Media type of the file behind access_url."/>
    <column name="preview" type="text" ucd="meta.ref.url;meta.preview"
      tablehead="Preview" displayHint="type=product"
      description="URL of a PNG preview of the similar image (as in
        ivoa.obscore.preview)."/>
    <column name="credit" type="text" ucd="meta.bib.author"
      tablehead="Credit"
      description="Who made the similar image; show it wherever the image is
        shown."/>
    <column name="category" type="text" ucd="meta.code.class"
      tablehead="Category"
      description="Science category of the similar image."/>
    <foreignKey inTable="models" source="model_id" metaOnly="True"/>
    <foreignKey inTable="//obscore#ObsCore" source="query_did"
      dest="obs_publisher_did" metaOnly="True"/>
    <foreignKey inTable="//obscore#ObsCore" source="obs_publisher_did"
      metaOnly="True"/>
    <!-- The columns come from similarity.images, not from ivoa.obscore:
      DaCHS rebuilds that view (dropping what depends on it) whenever an
      ObsCore table is imported.  access_url and preview are what the
      //obscore#publish mixin puts there (accref, accref?preview=True),
      turned into URLs by displayHint type=product. -->
    <viewStatement>
      CREATE VIEW \curtable (\colNames) AS (
        SELECT s.model_id, q.obs_publisher_did, q.obs_id, q.s_ra, q.s_dec,
          CAST(u.rank AS smallint), u.dist, nb.obs_publisher_did, nb.obs_id,
          NULLIF(nb.target_name, ''), nb.s_ra, nb.s_dec, nb.s_fov,
          nb.accref, nb.mime, nb.accref || '?preview=True', nb.credit,
          nb.category
        FROM \schema.images AS q
        JOIN \schema.neighbour_sets AS s ON s.image_id = q.image_id
        CROSS JOIN LATERAL unnest(s.neighbour_ids, s.dists)
          WITH ORDINALITY AS u(neighbour_id, dist, rank)
        JOIN \schema.images AS nb ON nb.image_id = u.neighbour_id)
    </viewStatement>
  </table>

  <table id="similar" onDisk="True" adql="True">
    <meta name="description">The short form of "images like this one": one
      row per (query image, rank) with the neighbour's main ObsCore columns,
      by the default model of the query image's collection (its first
      published model: the lowest model_id of the collection in
      similarity.models).  Query it by query_did, e.g. SELECT TOP 20 * FROM
      similarity.similar WHERE query_did = '...' ORDER BY rank;
      similarity.similar_by_model has every model and more columns.  Few
      columns and no model_id on purpose: DaCHS's ADQL parser and its
      output cost milliseconds per comparison and per column
      (docs/publish.md).</meta>
    <column original="similar_by_model.query_did"/>
    <column original="similar_by_model.rank"/>
    <column original="similar_by_model.dist"/>
    <column original="similar_by_model.obs_publisher_did"/>
    <column original="similar_by_model.obs_id"/>
    <column original="similar_by_model.target_name"/>
    <column original="similar_by_model.s_ra"/>
    <column original="similar_by_model.s_dec"/>
    <column original="similar_by_model.s_fov"/>
    <column original="similar_by_model.access_url"/>
    <column original="similar_by_model.preview"/>
    <column original="similar_by_model.credit"/>
    <foreignKey inTable="//obscore#ObsCore" source="query_did"
      dest="obs_publisher_did" metaOnly="True"/>
    <foreignKey inTable="//obscore#ObsCore" source="obs_publisher_did"
      metaOnly="True"/>
    <viewStatement>
      CREATE VIEW \curtable (\colNames) AS (
        SELECT q.obs_publisher_did, CAST(u.rank AS smallint), u.dist,
          nb.obs_publisher_did, nb.obs_id, NULLIF(nb.target_name, ''),
          nb.s_ra, nb.s_dec, nb.s_fov, nb.accref,
          nb.accref || '?preview=True', nb.credit
        FROM \schema.images AS q
        JOIN \schema.neighbour_sets AS s ON s.image_id = q.image_id
          AND s.model_id = (SELECT min(m.model_id) FROM \schema.models AS m
                            WHERE m.collection = q.collection)
        CROSS JOIN LATERAL unnest(s.neighbour_ids, s.dists)
          WITH ORDINALITY AS u(neighbour_id, dist, rank)
        JOIN \schema.images AS nb ON nb.image_id = u.neighbour_id)
    </viewStatement>
  </table>

  <data id="views">
    <make table="neighbours"/>
    <make table="outliers"/>
    <make table="similar"/>
    <make table="similar_by_model"/>
  </data>

  <!-- ======================== selections ========================== -->
  <table id="selections" onDisk="True" adql="True">
    <meta name="description">What users marked similar or not similar to a
      query image, for refining searches and as training signal.</meta>
    <column original="neighbours.model_id"
      description="Model whose neighbours the user was looking at."/>
    <column original="neighbours.image_id"
      description="The query image (similarity.images.image_id)."/>
    <column name="chosen_id" type="integer" required="True"
      ucd="meta.id.cross" tablehead="Chosen"
      description="The image the user marked (similarity.images.image_id)."/>
    <column name="is_similar" type="boolean" required="True"
      ucd="meta.code" tablehead="Similar?"
      description="True: marked similar; false: marked not similar."/>
    <column name="created" type="timestamp"
      ucd="time.creation" tablehead="When"
      description="When the user made the selection (UTC)."/>
    <column name="session_id" type="text" ucd="meta.id"
      tablehead="Session" verbLevel="20"
      description="Random id of the browser tab the selection came from (one
        user's view of similarity; no personal data)."/>
    <foreignKey inTable="images" source="image_id" metaOnly="True"/>
    <foreignKey inTable="images" source="chosen_id" dest="image_id"
      metaOnly="True"/>
    <foreignKey inTable="models" source="model_id" metaOnly="True"/>
    <index columns="image_id"/>
  </table>

  <data id="create_selections" updating="True">
    <!-- creates the table if missing and never drops user input -->
    <make table="selections"/>
  </data>

  <!-- ========================== services ========================== -->
  <service id="files" allowed="static">
    <!-- the models' ONNX files (data/published/weights), written by
      `vo-similarity publish`; similarity.models.weights_url points here -->
    <meta name="title">Image similarity: published model files</meta>
    <meta name="shortName">simil. files</meta>
    <property name="staticData">data/published</property>
    <nullCore/>
  </service>

  <service id="web" allowed="custom" customPage="res/web_page">
    <!-- The page "You might also like these images" and its JSON API, in
      res/web_page.py (installed by `vo-similarity publish` from
      vo_similarity/web/; docs/web.md).  It writes similarity.selections,
      only from the page itself (a token, the origin, a rate limit). -->
    <meta name="title">You might also like these images</meta>
    <meta name="shortName">simil. web</meta>
    <meta name="description">Browse the archive's images by similarity:
      find an image by id, target or position, see the images most like it,
      mark some as similar or not to refine the result, and send results to
      TOPCAT and Aladin.</meta>
    <publish render="custom" sets="local"/>
    <nullCore/>
  </service>

  <service id="search" allowed="api">
    <!-- Exact top n by cosine over a model's published embeddings
      (data/vectors, memory-mapped), for a query built from vectors and from
      images marked similar / not similar (Rocchio).  The code is
      res/search_kernel.py, installed by `vo-similarity publish` from
      vo_similarity/publish/search_kernel.py; docs/search-service.md. -->
    <meta name="title">Image similarity: search by vector or by example</meta>
    <meta name="shortName">simil. search</meta>
    <meta name="description">Exact nearest images to a query vector (an
      embedding computed with the model's ONNX file) or to images marked
      similar, moved away from images marked not similar; JSON out.</meta>
    <pythonCore>
      <!-- All parameters are text: the core parses them itself, so that
        every bad value gets a JSON error saying what is wrong (DaCHS's own
        parsing would answer with a VOTable). -->
      <inputTable>
        <inputKey name="model" type="text" multiplicity="single"
          description="model_id of the model to search
            (similarity.models); required."/>
        <inputKey name="n" type="text" multiplicity="single"
          description="Number of results, 1 to 1000 (default 20)."/>
        <inputKey name="similar" type="text" multiplicity="multiple"
          description="obs_publisher_did or obs_id of an image marked similar
            (repeatable); left out of the results."/>
        <inputKey name="not_similar" type="text" multiplicity="multiple"
          description="obs_publisher_did or obs_id of an image marked not
            similar (repeatable); left out of the results."/>
        <inputKey name="vector" type="text" multiplicity="multiple"
          description="A query vector: dim comma-separated finite numbers
            (normalised by the service); repeatable."/>
        <inputKey name="weight" type="text" multiplicity="multiple"
          description="Positive weight of each vector, in order (default 1
            each)."/>
        <inputKey name="beta" type="text" multiplicity="single"
          description="Weight of the images marked not similar, 0 to 1
            (default 0.5)."/>
      </inputTable>
      <outputTable>
        <outputField name="result" type="text"
          description="The JSON reply (docs/search-service.md)."/>
      </outputTable>
      <coreProc>
        <setup imports="importlib.util">
          <!-- imports="a.b" means "from a import b" -->
          <code>
            # loaded afresh with the RD (dachs serv reload after a publish
            # that installs a new kernel)
            kernel_spec = util.spec_from_file_location(
              "similarity_search_kernel", rd.getAbsPath("res/search_kernel.py"))
            kernel = util.module_from_spec(kernel_spec)
            kernel_spec.loader.exec_module(kernel)
            vector_root = rd.getAbsPath("data/vectors")
          </code>
        </setup>
        <code>
          return kernel.handle(inputTable.args, base.getTableConn, vector_root)
        </code>
      </coreProc>
    </pythonCore>
  </service>

  <!-- ========================= TAP examples ======================== -->
  <!-- Fed into the TAP service's examples by /var/gavo/etc/userconfig.rd
    (installed by `vo-similarity publish`).  They use image_id 0 and
    model_id 1, which exist in every publication (ids are dense and the
    first model published gets 1); `vo-similarity publish` prints the same
    queries with a real DID. -->
  <STREAM id="tapexamples">
    <meta name="_example" title="The 20 images most similar to one image">
      Give the publisher DID of an image and get its 20 nearest neighbours
      with their ObsCore metadata, most similar first, from the view
      similarity.similar (no join needed), which answers with the default
      model of the image's collection (its lowest model_id).  dist is the
      distance of the embeddings (0: identical).

      .. tapquery::

        SELECT TOP 20 * FROM similarity.similar
        WHERE query_did IN (SELECT obs_publisher_did FROM similarity.images
                            WHERE image_id = 0)
        ORDER BY rank

      With a DID, the usual form is WHERE query_did = 'ivo://...' (here the
      subquery picks the first image, which exists in every publication).
      Another model's neighbours: FROM similarity.similar_by_model ... AND
      model_id = 2.
    </meta>
    <meta name="_example" title="Neighbours joined with ivoa.obscore">
      The long form of the query above, the pattern for columns the view
      does not carry: the neighbours (here of image_id 0) joined with
      ivoa.obscore (or another archive's ObsCore table, through an upload).

      .. tapquery::

        SELECT TOP 20 n.rank, n.dist, o.obs_publisher_did, o.target_name,
          o.s_ra, o.s_dec, o.access_url, o.preview, o.t_min, o.em_min
        FROM similarity.neighbours AS n
        JOIN ivoa.obscore AS o ON o.obs_publisher_did = n.neighbour_did
        WHERE n.image_id = 0 AND n.model_id = 1 AND n.rank &lt;= 20
        ORDER BY rank
    </meta>
    <meta name="_example" title="Refine from several chosen images">
      Images that are among the 100 nearest neighbours of several chosen
      images at once, ranked by how many of them agree and then by mean
      distance; the chosen images themselves are left out.

      .. tapquery::

        SELECT TOP 20 n.neighbour_did, COUNT(*) AS votes,
          AVG(n.dist) AS mean_dist
        FROM similarity.neighbours AS n
        WHERE n.model_id = 1 AND n.rank &lt;= 100
          AND n.image_id IN (0, 1, 2) AND n.neighbour_id NOT IN (0, 1, 2)
        GROUP BY n.neighbour_did
        ORDER BY votes DESC, mean_dist
    </meta>
    <meta name="_example" title="Similar images of other targets">
      Leave out images of the same place on the sky: neighbours whose centre
      is more than 1 degree from the query image's.

      .. tapquery::

        SELECT TOP 20 n.rank, n.dist, o.target_name, o.s_ra, o.s_dec,
          o.access_url
        FROM similarity.neighbours AS n
        JOIN ivoa.obscore AS q ON q.obs_publisher_did = n.obs_publisher_did
        JOIN ivoa.obscore AS o ON o.obs_publisher_did = n.neighbour_did
        WHERE n.image_id = 0 AND n.model_id = 1
          AND DISTANCE(POINT('ICRS', o.s_ra, o.s_dec),
                       POINT('ICRS', q.s_ra, q.s_dec)) &gt; 1
        ORDER BY rank
    </meta>
    <meta name="_example" title="The most unusual images">
      Images with the largest outlier score, i.e. the fewest close
      neighbours under the model.

      .. tapquery::

        SELECT TOP 20 s.outlier, o.obs_publisher_did, o.target_name,
          o.access_url, o.preview
        FROM similarity.outliers AS s
        JOIN ivoa.obscore AS o ON o.obs_publisher_did = s.obs_publisher_did
        WHERE s.model_id = 1 AND s.outlier IS NOT NULL
        ORDER BY outlier DESC
    </meta>
    <meta name="_example" title="Similar images within a sky region">
      Among the 1000 nearest neighbours of an image, those whose centre lies
      within 30 degrees of a position (here the Orion nebula).

      .. tapquery::

        SELECT TOP 50 n.rank, n.dist, o.target_name, o.s_ra, o.s_dec,
          o.access_url
        FROM similarity.neighbours AS n
        JOIN ivoa.obscore AS o ON o.obs_publisher_did = n.neighbour_did
        WHERE n.image_id = 0 AND n.model_id = 1
          AND 1 = CONTAINS(POINT('ICRS', o.s_ra, o.s_dec),
                           CIRCLE('ICRS', 83.82, -5.39, 30))
        ORDER BY rank
    </meta>
  </STREAM>

  <!-- ====================== regression suite ======================= -->
  <!-- `dachs test similarity/q`: properties that fail when a load is
    broken (counts, rank order, sorted distances, DIDs resolving in
    ivoa.obscore), whatever data set is published. -->
  <regSuite title="similarity regression" sequential="True">
    <regTest title="Top 20 of image 0 come in rank order, sorted by dist">
      <url parSet="TAP" QUERY="SELECT TOP 20 n.rank, n.dist, n.image_id,
        n.neighbour_id, o.obs_publisher_did FROM similarity.neighbours AS n
        JOIN ivoa.obscore AS o ON o.obs_publisher_did = n.neighbour_did
        WHERE n.image_id = 0 AND n.model_id = 1 ORDER BY rank"
        >/tap/sync</url>
      <code>
        rows = self.getVOTableRows()
        self.assertEqual([r["rank"] for r in rows], list(range(1, 21)))
        dists = [r["dist"] for r in rows]
        self.assertEqual(dists, sorted(dists))
        self.assertTrue(0 &lt;= dists[0] and dists[-1] &lt;= 2.0001)
        self.assertFalse(any(r["neighbour_id"] == 0 for r in rows))
        self.assertEqual(len(set(r["neighbour_id"] for r in rows)), 20)
        self.assertTrue(all(r["obs_publisher_did"].startswith("ivo://")
          for r in rows))
      </code>
    </regTest>

    <regTest title="The short view similarity.similar gives the top 20 in order">
      <url parSet="TAP" QUERY="SELECT TOP 20 s.rank, s.dist, s.access_url,
        s.preview, s.query_did FROM similarity.similar AS s
        JOIN similarity.images AS i ON i.obs_publisher_did = s.query_did
        WHERE i.image_id = 0 AND s.rank &lt;= 20
        ORDER BY rank">/tap/sync</url>
      <code>
        rows = self.getVOTableRows()
        self.assertEqual([r["rank"] for r in rows], list(range(1, 21)))
        dists = [r["dist"] for r in rows]
        self.assertEqual(dists, sorted(dists))
        self.assertTrue(all(r["access_url"].startswith("http") for r in rows))
        self.assertTrue(all("preview" in r["preview"] for r in rows))
      </code>
    </regTest>

    <regTest title="Every image has exactly k neighbours per model">
      <url parSet="TAP" QUERY="SELECT m.model_id, m.k, m.n_images,
        COUNT(*) AS n_rows, COUNT(DISTINCT n.image_id) AS n_queried,
        MAX(n.rank) AS max_rank FROM similarity.models AS m
        JOIN similarity.neighbours AS n ON n.model_id = m.model_id
        WHERE n.image_id IN (0, 1) GROUP BY m.model_id, m.k, m.n_images"
        >/tap/sync</url>
      <code>
        rows = self.getVOTableRows()
        self.assertTrue(len(rows) &gt;= 1)
        for r in rows:
          self.assertEqual(r["n_rows"], 2 * r["k"])
          self.assertEqual(r["max_rank"], r["k"])
          self.assertEqual(r["n_queried"], 2)
          self.assertTrue(r["n_images"] &gt; r["k"])
      </code>
    </regTest>

    <regTest title="Every image is in ivoa.obscore with access_url and preview">
      <url parSet="TAP" QUERY="SELECT COUNT(*) AS n_images,
        COUNT(o.obs_publisher_did) AS n_obscore,
        SUM(CASE WHEN o.access_url IS NULL THEN 0 ELSE 1 END) AS n_access,
        SUM(CASE WHEN o.preview IS NULL THEN 0 ELSE 1 END) AS n_preview
        FROM similarity.images AS i LEFT OUTER JOIN ivoa.obscore AS o
        ON o.obs_publisher_did = i.obs_publisher_did"
        >/tap/sync</url>
      <code>
        row = self.getFirstVOTableRow()
        self.assertTrue(row["n_images"] &gt; 1)
        self.assertEqual(row["n_obscore"], row["n_images"])
        self.assertEqual(row["n_access"], row["n_images"])
        self.assertEqual(row["n_preview"], row["n_images"])
      </code>
    </regTest>

    <regTest title="Neighbour DIDs agree with the images table">
      <url parSet="TAP" QUERY="SELECT TOP 5 n.neighbour_id, n.neighbour_did,
        i.obs_publisher_did FROM similarity.neighbours AS n
        JOIN similarity.images AS i ON i.image_id = n.neighbour_id
        WHERE n.image_id = 1 AND n.model_id = 1 ORDER BY rank"
        >/tap/sync</url>
      <code>
        rows = self.getVOTableRows()
        self.assertEqual(len(rows), 5)
        for r in rows:
          self.assertEqual(r["neighbour_did"], r["obs_publisher_did"])
      </code>
    </regTest>

    <regTest title="Outlier scores exist for every image of model 1">
      <url parSet="TAP" QUERY="SELECT COUNT(*) AS n, COUNT(s.outlier) AS
        n_scored, m.n_images FROM similarity.outliers AS s
        JOIN similarity.models AS m ON m.model_id = s.model_id
        WHERE s.model_id = 1 GROUP BY m.n_images"
        >/tap/sync</url>
      <code>
        row = self.getFirstVOTableRow()
        self.assertEqual(row["n"], row["n_images"])
        self.assertEqual(row["n_scored"], row["n_images"])
      </code>
    </regTest>
  </regSuite>
</resource>
