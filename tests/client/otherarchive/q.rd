<resource schema="otherarchive" resdir=".">
  <!-- A second archive for the client's tests (tests/client/conftest.py):
    its own ObsCore-like table on the same DaCHS, standing in for another
    archive that join_archive reaches through a TAP upload.  The fixture
    writes data/obs.csv with some positions close to published images and
    some far from all of them, then runs `dachs imp otherarchive/q`. -->
  <meta name="title">Another archive (test stand-in)</meta>
  <meta name="description">Observations of another archive, with ObsCore
    column names, for testing joins by position.</meta>
  <meta name="creationDate">2026-12-01T00:00:00Z</meta>
  <meta name="subject">astronomical-methods</meta>
  <meta name="creator.name">vo-similarity tests</meta>

  <table id="obscore" onDisk="True" adql="True" primary="obs_publisher_did">
    <meta name="description">One row per observation of the other
      archive, with the ObsCore columns a positional join needs.</meta>
    <column name="obs_publisher_did" type="text" required="True"
      ucd="meta.ref.ivoid" description="Publisher dataset identifier."/>
    <column name="obs_id" type="text" ucd="meta.id"
      description="Identifier of the observation in the other archive."/>
    <column name="obs_collection" type="text" ucd="meta.id"
      description="Name of the collection."/>
    <column name="dataproduct_type" type="text" ucd="meta.code.class"
      description="Data product type."/>
    <column name="target_name" type="text" ucd="meta.id;src"
      description="Object observed."/>
    <column name="s_ra" type="double precision" unit="deg"
      ucd="pos.eq.ra;meta.main" description="ICRS right ascension."/>
    <column name="s_dec" type="double precision" unit="deg"
      ucd="pos.eq.dec;meta.main" description="ICRS declination."/>
    <column name="s_fov" type="double precision" unit="deg"
      ucd="phys.angSize;instr.fov" description="Field of view."/>
    <column name="access_url" type="text" ucd="meta.ref.url"
      description="Where the data are."/>
    <column name="access_format" type="text" ucd="meta.code.mime"
      description="Media type behind access_url."/>
    <index name="otherarchive_q3c">q3c_ang2ipix(s_ra, s_dec)</index>
  </table>

  <data id="import">
    <sources>data/obs.csv</sources>
    <csvGrammar enc="utf-8"/>
    <make table="obscore">
      <rowmaker idmaps="*"/>
    </make>
  </data>
</resource>
